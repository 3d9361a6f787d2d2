//! The managers' config tools: `read_config`, `write_config`, `config_diff`, `config_log`.
//! A manager reads and edits another agent's config on that agent's **proposed** side (a
//! branch of the agent's config repo, owned by the core); nothing it writes runs until it files
//! `request_apply_commit` with the sha and an operator approves. Every call is in the audit.
//!
//! `write_config` takes the files to replace (a path and its text each; other files stay as they
//! are), checks them ([`check_files`]: safe relative paths, text, bounded sizes and counts), lays
//! them over the proposed tree and validates the result as `hive check` would (`agent.toml`
//! parsed, every error named by its key; its brain's provider granted by hive.toml), then
//! commits on the proposed side. It answers the full sha and the diff against the applied
//! config. What the tools answer passes the secret filter: a manager never reads a secret out of
//! a config.

use serde::Deserialize;
use serde_json::{Value, json};

use super::tool_spec::{ToolError, ToolSpec, args};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::configrepo::{self, CommitError, ConfigFile, ConfigRepo};

/// Most files one `write_config` may write.
pub const MAX_WRITE_FILES: usize = 32;
/// Longest commit message, in bytes.
pub const MAX_MESSAGE: usize = 2000;
/// Largest answer a config tool gives (a model reads it; the socket carries it in one frame).
pub const MAX_ANSWER: usize = 4 << 20;

/// The config tools, managers only.
pub fn catalog() -> Vec<ToolSpec> {
    let agent = json!({ "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$" });
    vec![
        ToolSpec {
            name: "read_config",
            description: "Managers only: read `agent`'s config: the applied files and sha (what it runs), and the proposed files and sha (what was committed since, if anything).",
            input_schema: json!({
                "type": "object",
                "properties": { "agent": agent },
                "required": ["agent"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
        ToolSpec {
            name: "write_config",
            description: "Managers only: write files into `agent`'s proposed config (each replaces the file at its path; other files stay) and commit them with `message`. agent.toml is validated as `hive check` does. Answers the commit's full sha and its diff against the applied config; file the sha with request_apply_commit for an operator to approve.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "agent": agent,
                    "files": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_WRITE_FILES,
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": { "type": "string", "description": "relative, e.g. agent.toml or prompt.md" },
                                "content": { "type": "string" },
                                "executable": { "type": "boolean" }
                            },
                            "required": ["path", "content"],
                            "additionalProperties": false
                        }
                    },
                    "message": { "type": "string" }
                },
                "required": ["agent", "files", "message"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
        ToolSpec {
            name: "config_diff",
            description: "Managers only: the diff of commit `sha` (default: the proposed tip) of `agent`'s config against the applied config.",
            input_schema: json!({
                "type": "object",
                "properties": {
                    "agent": agent,
                    "sha": { "type": "string", "pattern": "^[0-9a-f]{40}$" }
                },
                "required": ["agent"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
        ToolSpec {
            name: "config_log",
            description: "Managers only: `agent`'s deploys (number and sha) and every request about it: who asked, its state, which deploy it became, who approved.",
            input_schema: json!({
                "type": "object",
                "properties": { "agent": agent },
                "required": ["agent"],
                "additionalProperties": false
            }),
            managers_only: true,
        },
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArg {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub executable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentArgs {
    agent: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    agent: String,
    files: Vec<FileArg>,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffArgs {
    agent: String,
    sha: Option<String>,
}

/// Why a `write_config` is refused before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum WriteRefused {
    #[error("no files to write")]
    NoFiles,
    #[error("at most {MAX_WRITE_FILES} files at once")]
    TooManyFiles,
    #[error("{0} is given twice")]
    Twice(String),
    #[error("the commit message must be 1 to {MAX_MESSAGE} bytes")]
    Message,
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("{0:#}")]
    Repo(#[from] anyhow::Error),
    #[error("{0}")]
    Refused(String),
    #[error("the files are the same as the proposed ones: nothing to commit")]
    NothingChanges,
    #[error("{0} holds a control character; config files are text")]
    Control(String),
}

/// Checks what a manager asks to write, before the repo is touched: at least one file and at
/// most [`MAX_WRITE_FILES`], each path safe (relative, no `.`/`..`/`.git`, printable) and given
/// once, each content text (no NUL) within the repo's file size, a message of sensible length.
pub fn check_files(files: &[FileArg], message: &str) -> Result<Vec<ConfigFile>, WriteRefused> {
    if files.is_empty() {
        return Err(WriteRefused::NoFiles);
    }
    if files.len() > MAX_WRITE_FILES {
        return Err(WriteRefused::TooManyFiles);
    }
    if message.trim().is_empty() || message.len() > MAX_MESSAGE {
        return Err(WriteRefused::Message);
    }
    let mut out: Vec<ConfigFile> = Vec::with_capacity(files.len());
    for f in files {
        configrepo::check_path(&f.path)?;
        if out.iter().any(|o| o.path == f.path) {
            return Err(WriteRefused::Twice(f.path.clone()));
        }
        if f.content.len() as u64 > configrepo::MAX_FILE {
            return Err(CommitError::TooLarge(f.path.clone()).into());
        }
        if configrepo::is_binary(f.content.as_bytes()) {
            return Err(CommitError::Binary(f.path.clone()).into());
        }
        if f.content
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(WriteRefused::Control(f.path.clone()));
        }
        out.push(ConfigFile {
            path: f.path.clone(),
            executable: f.executable,
            content: f.content.clone().into_bytes(),
        });
    }
    Ok(out)
}

fn files_json(files: &[ConfigFile]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|f| {
                json!({
                    "path": f.path,
                    "executable": f.executable,
                    "content": String::from_utf8_lossy(&f.content),
                })
            })
            .collect(),
    )
}

/// How many deploys and requests `config_log` lists (the newest; the rest are counted).
pub const LOG_LIMIT: usize = 50;

/// A config tool's answer before it is written out, and what the audit records of it.
struct Answer {
    json: Value,
    sha: Option<String>,
    outcome: &'static str,
}

impl Core {
    /// Runs one config tool for manager `by` (already checked to be a manager). Every call is
    /// audited, refused ones too; the answer, and an error's text, pass the secret filter, and
    /// the data dir's path is not shown.
    pub(super) async fn config_tool(
        &self,
        by: &AgentName,
        tool: &str,
        v: &Value,
    ) -> Result<String, ToolError> {
        let target = v
            .get("agent")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let result = self.config_call(tool, v).await;
        match &result {
            Ok(a) => self.audit_call(by, tool, Some(&target), a.sha.as_deref(), a.outcome, None),
            Err(e) => self.audit_call(
                by,
                tool,
                Some(&target),
                None,
                "refused",
                Some(&e.to_string()),
            ),
        }
        match result {
            Ok(mut a) => {
                self.secrets().redact_json(&mut a.json);
                let mut text = serde_json::to_string_pretty(&a.json).expect("json serialises");
                if text.len() > MAX_ANSWER {
                    if a.outcome == "committed" {
                        // Committed: the answer must not fail now; the diff is only named.
                        a.json["diff"] = json!(
                            "(the diff is too large to answer here; config_diff shows it in parts of the files)"
                        );
                        text = serde_json::to_string_pretty(&a.json).expect("json serialises");
                    } else {
                        return Err(ToolError::Refused(format!(
                            "the answer would be {} bytes, more than the {MAX_ANSWER} a tool answers; read the diff (config_diff) instead",
                            text.len()
                        )));
                    }
                }
                Ok(text)
            }
            Err(e) => Err(ToolError::Refused(self.shown(&e.to_string()))),
        }
    }

    async fn config_call(&self, tool: &str, v: &Value) -> Result<Answer, ToolError> {
        let agent = match tool {
            "read_config" | "config_log" => args::<AgentArgs>(tool, v)?.agent,
            "write_config" => args::<WriteArgs>(tool, v)?.agent,
            "config_diff" => args::<DiffArgs>(tool, v)?.agent,
            other => return Err(ToolError::NoTool(other.to_owned())),
        };
        let name = self.agent_named(&agent)?;
        let (core, tool, v) = (self.clone(), tool.to_owned(), v.clone());
        tokio::task::spawn_blocking(move || core.config_blocking(&name, &tool, &v))
            .await
            .map_err(|e| ToolError::Store(e.into()))?
    }

    fn config_blocking(
        &self,
        name: &AgentName,
        tool: &str,
        v: &Value,
    ) -> Result<Answer, ToolError> {
        let repo = ConfigRepo::new(self.data_dir(), name);
        let git = |e: anyhow::Error| ToolError::Refused(format!("{e:#}"));
        let read = |sha: &Option<String>| -> Result<Value, ToolError> {
            match sha {
                Some(s) => Ok(files_json(
                    &repo
                        .read_commit(s)
                        .map_err(|e| ToolError::Refused(e.to_string()))?,
                )),
                None => Ok(Value::Null),
            }
        };
        Ok(match tool {
            "read_config" => {
                let applied = repo.applied().map_err(git)?;
                let proposed = repo.proposed().map_err(git)?;
                let same = proposed == applied;
                Answer {
                    json: json!({
                        "agent": name.as_str(),
                        "applied_sha": applied,
                        "deploy": repo.current().map(|(n, _)| n),
                        "applied": read(&applied)?,
                        "proposed_sha": proposed,
                        "proposed": if same { Value::String("the same as applied".into()) } else { read(&proposed)? },
                    }),
                    sha: None,
                    outcome: "read",
                }
            }
            "write_config" => {
                let a: WriteArgs = args(tool, v)?;
                let sha = self
                    .write_config(&repo, &a.files, &a.message)
                    .map_err(|e| ToolError::Refused(e.to_string()))?;
                // Committed: nothing may fail from here on (a re-run would commit again).
                let diff = repo.diff(&sha).unwrap_or_else(|e| {
                    format!("(the diff could not be read: {e:#}; config_diff shows it)")
                });
                Answer {
                    json: json!({ "agent": name.as_str(), "sha": sha, "diff": diff,
                        "next": format!("request_apply_commit(agent = \"{name}\", sha = \"{sha}\", summary = …) asks an operator to apply it") }),
                    sha: Some(sha),
                    outcome: "committed",
                }
            }
            "config_diff" => {
                let a: DiffArgs = args(tool, v)?;
                let sha =
                    match a.sha {
                        Some(s) => configrepo::parse_sha(&s)
                            .map_err(|e| ToolError::Refused(e.to_string()))?,
                        None => repo.proposed().map_err(git)?.ok_or_else(|| {
                            ToolError::Refused(format!("{name} has no config yet"))
                        })?,
                    };
                let diff = repo.diff(&sha).map_err(git)?;
                Answer {
                    json: json!({ "agent": name.as_str(), "sha": sha, "diff": diff }),
                    sha: Some(sha),
                    outcome: "read",
                }
            }
            "config_log" => {
                let all = repo.deploys().map_err(git)?;
                let deploys: Vec<Value> = newest(&all)
                    .iter()
                    .map(
                        |(n, sha)| json!({ "deploy": n, "tag": format!("deploy/{n}"), "sha": sha }),
                    )
                    .collect();
                let approvals = self
                    .store()
                    .approvals_of(name.as_str())
                    .map_err(ToolError::Store)?;
                let mut requests = Vec::new();
                for a in newest(&approvals) {
                    let approvers = self.store().approvers(a.id).map_err(ToolError::Store)?;
                    requests.push(json!({
                        "id": a.id,
                        "kind": a.kind.as_str(),
                        "sha": a.sha,
                        "requester": a.requester,
                        "summary": a.summary,
                        "state": a.state.as_str(),
                        "deploy": a.deploy,
                        "approved_by": approvers,
                        "reason": a.reason,
                    }));
                }
                Answer {
                    json: json!({
                        "agent": name.as_str(),
                        "deploys": deploys,
                        "earlier_deploys": all.len() - deploys.len(),
                        "requests": requests,
                        "earlier_requests": approvals.len() - requests.len(),
                    }),
                    sha: None,
                    outcome: "read",
                }
            }
            other => return Err(ToolError::NoTool(other.to_owned())),
        })
    }

    /// Checks `files`, then commits them on `repo`'s proposed side if the whole new tree, as
    /// committed, validates as `hive check` would and changes something. The new sha.
    fn write_config(
        &self,
        repo: &ConfigRepo,
        files: &[FileArg],
        message: &str,
    ) -> Result<String, WriteRefused> {
        let files = check_files(files, message)?;
        repo.commit_proposed_checked(&files, message, |before, tree| {
            if same_tree(before, tree) {
                return Err(WriteRefused::NothingChanges);
            }
            // As `hive check` validates it: every key's error, then what hive.toml grants.
            let spec = repo.parse_spec(tree)?;
            crate::c0re::approvals::grantable(self.cfg(), &spec)
                .map_err(|r| WriteRefused::Refused(r.to_string()))
        })
    }
}

/// The newest [`LOG_LIMIT`] of `all` (oldest first).
fn newest<T>(all: &[T]) -> &[T] {
    &all[all.len().saturating_sub(LOG_LIMIT)..]
}

/// Whether two trees hold the same files, modes and contents.
fn same_tree(a: &[ConfigFile], b: &[ConfigFile]) -> bool {
    let key = |t: &[ConfigFile]| {
        let mut v: Vec<(String, bool, Vec<u8>)> = t
            .iter()
            .map(|f| (f.path.clone(), f.executable, f.content.clone()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, content: &str) -> FileArg {
        FileArg {
            path: path.into(),
            content: content.into(),
            executable: false,
        }
    }

    #[test]
    fn what_a_manager_may_write() {
        struct Case {
            name: &'static str,
            files: Vec<FileArg>,
            message: &'static str,
            refused: Option<&'static str>,
        }
        let big = "x".repeat(configrepo::MAX_FILE as usize + 1);
        let cases = [
            Case {
                name: "a prompt and an agent.toml",
                files: vec![
                    f("agent.toml", "[brain]\nkind = \"scripted\"\n"),
                    f("prompt.md", "hi"),
                ],
                message: "give it a prompt",
                refused: None,
            },
            Case {
                name: "a file in a subdirectory",
                files: vec![f("tools/run.sh", "echo hi\n")],
                message: "a tool",
                refused: None,
            },
            Case {
                name: "nothing",
                files: vec![],
                message: "empty",
                refused: Some("no files"),
            },
            Case {
                name: "out of the repo",
                files: vec![f("../x", "x")],
                message: "escape",
                refused: Some("forbidden path component"),
            },
            Case {
                name: "absolute",
                files: vec![f("/etc/passwd", "x")],
                message: "escape",
                refused: Some("not a relative path"),
            },
            Case {
                name: "into git's own files",
                files: vec![f(".git/config", "x")],
                message: "escape",
                refused: Some("forbidden path component"),
            },
            Case {
                name: "a control character in a path",
                files: vec![f("a\nb", "x")],
                message: "odd",
                refused: Some("control character"),
            },
            Case {
                name: "the same path twice",
                files: vec![f("prompt.md", "a"), f("prompt.md", "b")],
                message: "twice",
                refused: Some("given twice"),
            },
            Case {
                name: "binary content",
                files: vec![f("blob", "a\0b")],
                message: "binary",
                refused: Some("binary file"),
            },
            Case {
                name: "a control character in a text",
                files: vec![f("prompt.md", "bell \u{7} here")],
                message: "odd",
                refused: Some("control character"),
            },
            Case {
                name: "tabs and line ends are text",
                files: vec![f("prompt.md", "a\tb\r\nc\n")],
                message: "fine",
                refused: None,
            },
            Case {
                name: "too large",
                files: vec![f("big.md", &big)],
                message: "big",
                refused: Some("larger than"),
            },
            Case {
                name: "no message",
                files: vec![f("prompt.md", "a")],
                message: "  ",
                refused: Some("commit message"),
            },
        ];
        for c in cases {
            let got = check_files(&c.files, c.message);
            match (c.refused, got) {
                (None, Ok(files)) => assert_eq!(files.len(), c.files.len(), "{}", c.name),
                (Some(want), Err(e)) => {
                    assert!(e.to_string().contains(want), "{}: {e}", c.name)
                }
                (want, got) => panic!("{}: wanted {want:?}, got {got:?}", c.name),
            }
        }
        let many: Vec<FileArg> = (0..=MAX_WRITE_FILES)
            .map(|i| f(&format!("f{i}"), "x"))
            .collect();
        assert!(matches!(
            check_files(&many, "many"),
            Err(WriteRefused::TooManyFiles)
        ));
    }

    #[test]
    fn a_tree_is_the_same_by_paths_modes_and_contents() {
        let file = |p: &str, c: &str, x: bool| ConfigFile {
            path: p.into(),
            executable: x,
            content: c.as_bytes().to_vec(),
        };
        let a = [
            file("agent.toml", "t", false),
            file("prompt.md", "p", false),
        ];
        let reordered = [
            file("prompt.md", "p", false),
            file("agent.toml", "t", false),
        ];
        assert!(same_tree(&a, &reordered));
        assert!(!same_tree(&a, &[file("agent.toml", "t", false)]));
        assert!(!same_tree(
            &a,
            &[file("agent.toml", "t", false), file("prompt.md", "p", true)]
        ));
        assert!(!same_tree(
            &a,
            &[
                file("agent.toml", "t", false),
                file("prompt.md", "q", false)
            ]
        ));
        let many: Vec<usize> = (0..LOG_LIMIT + 7).collect();
        assert_eq!(newest(&many).len(), LOG_LIMIT);
        assert_eq!(newest(&many)[0], 7, "the newest are kept, oldest first");
        assert_eq!(newest(&many[..3]), &[0, 1, 2]);
    }
}
