//! The `claude-code` brain: the Claude Code CLI, headless, one run per message.
//!
//! `claude --bare -p <message> --output-format stream-json --verbose --mcp-config <hive mcp>
//! --strict-mcp-config --tools "" --allowedTools mcp__hive --permission-mode dontAsk`, with a
//! session per agent kept in its state dir and resumed across turns and rebuilds.
//!
//! The CLI never gets a key: `ANTHROPIC_BASE_URL` points at a loopback proxy inside this
//! harness ([`proxy`], one per run, serving only the run's own CLI), which hands each Messages
//! request to hive-c0re (the `model` socket request; the core adds the key, enforces budgets,
//! records usage) and answers the CLI, re-streaming the reply as server-sent events when it
//! asked for a stream. What the CLI reports is checked rather than
//! its exit status: the hive MCP server must be `connected`, and a result with `is_error` fails
//! the turn.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Brain, BrainError, Tools};
use crate::agent_spec::{AgentSpec, BrainSpec};
use crate::wire::protocol::{Control, Message};

pub(crate) mod proxy;

use proxy::{MAX_REQUEST, Proxy};

/// The Claude Code release hyperhive is tested with (`npm install @anthropic-ai/claude-code@…`).
pub const CLI_VERSION: &str = "2.1.330";
/// Environment variable naming the CLI (the runtime passes it through to the harness).
pub const CLI_ENV: &str = crate::config::env::CLAUDE_CODE;
const SESSION_FILE: &str = "claude-session";

/// A declared MCP server: name, program, arguments, environment.
type DeclaredServer = (
    String,
    PathBuf,
    Vec<String>,
    std::collections::BTreeMap<String, String>,
);

pub struct ClaudeCode {
    agent: String,
    model: Option<String>,
    max_turns: u32,
    prompt: Option<String>,
    state_dir: PathBuf,
    tools_socket: PathBuf,
    cli: PathBuf,
    hive: PathBuf,
    /// Built-in tools the config enables (none by default).
    builtin_tools: Vec<String>,
    /// Declared MCP servers.
    servers: Vec<DeclaredServer>,
}

impl ClaudeCode {
    /// The brain for `spec`, or why it cannot run here (said in the agent's room).
    pub fn new(spec: &AgentSpec, state_dir: &Path, socket: &Path) -> anyhow::Result<Self> {
        let BrainSpec::ClaudeCode {
            model,
            max_turns,
            mcp_servers,
            builtin_tools,
            ..
        } = &spec.brain
        else {
            anyhow::bail!("not a claude-code brain");
        };
        let cli = std::env::var_os(CLI_ENV)
            .map(PathBuf::from)
            .or_else(|| crate::fsutil::which("claude"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the Claude Code CLI is not installed (npm install @anthropic-ai/claude-code@{CLI_VERSION}, then set {CLI_ENV} or put `claude` on PATH)"
                )
            })?;
        if !cli.is_file() {
            anyhow::bail!(
                "the Claude Code CLI is not at {} (inside this agent's runtime)",
                cli.display()
            );
        }
        let exe = std::env::current_exe()?;
        let hive = exe.with_file_name("hive");
        if !hive.is_file() {
            anyhow::bail!("`hive` (for hive mcp) is not beside {}", exe.display());
        }
        Ok(Self {
            agent: spec.name.to_string(),
            model: model.clone(),
            max_turns: max_turns.unwrap_or(8),
            prompt: spec.prompt.clone(),
            state_dir: state_dir.to_owned(),
            tools_socket: crate::wire::tools_socket_path(socket),
            builtin_tools: builtin_tools.clone(),
            cli,
            hive,
            servers: mcp_servers
                .iter()
                .filter_map(|(name, s)| {
                    let (program, args) = s.argv(&spec.dir)?;
                    Some((name.clone(), program, args.to_vec(), s.env.clone()))
                })
                .collect(),
        })
    }

    fn mcp_config(&self) -> Value {
        let mut servers = serde_json::Map::new();
        servers.insert(
            "hive".into(),
            json!({
                "type": "stdio",
                "command": self.hive,
                "args": ["mcp", "--name", self.agent, "--socket", self.tools_socket],
            }),
        );
        for (name, program, args, env) in &self.servers {
            servers.insert(
                name.clone(),
                json!({ "type": "stdio", "command": program, "args": args, "env": env }),
            );
        }
        json!({ "mcpServers": servers })
    }

    /// `--allowedTools`: the hive's tools and every declared server's.
    fn allowed_tools(&self) -> String {
        std::iter::once("mcp__hive".to_owned())
            .chain(self.servers.iter().map(|(n, ..)| format!("mcp__{n}")))
            .chain(self.builtin_tools.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What one run of the CLI reported.
struct CliRun {
    mcp_status: Option<String>,
    result: Option<Value>,
    servers: Value,
    budget: Option<String>,
    /// The session outgrew what the hive forwards.
    too_large: bool,
    /// The run resumed an earlier session.
    resumed: bool,
    /// A `/compact` run's outcome, as the CLI reports it (`system`/`status`, `compact_result`).
    compact_result: Option<String>,
}

impl ClaudeCode {
    /// Runs the CLI once with `prompt`, resuming the agent's session unless `fresh`.
    async fn run_cli(
        &mut self,
        prompt: &str,
        tools: &mut Tools<'_>,
        fresh: bool,
    ) -> Result<CliRun, BrainError> {
        let proxy = Proxy::open().await?;
        let mcp = self.state_dir.join(".hive-mcp.json");
        std::fs::write(&mcp, self.mcp_config().to_string())
            .map_err(|e| BrainError::Failed(format!("cannot write the MCP config: {e}")))?;
        let session_file = self.state_dir.join(SESSION_FILE);
        let session = if fresh {
            None
        } else {
            std::fs::read_to_string(&session_file)
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let mut cmd = tokio::process::Command::new(&self.cli);
        cmd.arg("--bare")
            .arg("-p")
            .arg(prompt)
            .args(["--output-format", "stream-json", "--verbose"])
            .arg("--mcp-config")
            .arg(&mcp)
            .args(["--strict-mcp-config", "--tools"])
            .arg(self.builtin_tools.join(","))
            .arg("--allowedTools")
            .arg(self.allowed_tools())
            .args(["--permission-mode", "dontAsk"])
            .args(["--max-turns", &self.max_turns.to_string()]);
        if let Some(p) = &self.prompt {
            cmd.args(["--append-system-prompt", p]);
        }
        if let Some(m) = &self.model {
            cmd.args(["--model", m]);
        }
        let (new_session, resumed) = match &session {
            Some(id) if !id.is_empty() => {
                cmd.args(["--resume", id]);
                (None, true)
            }
            _ => {
                let id = crate::proc::uuid_v4();
                cmd.args(["--session-id", &id]);
                (Some(id), false)
            }
        };
        crate::proc::harness_child(&mut cmd, &self.state_dir)
            .current_dir(&self.state_dir)
            .env("ANTHROPIC_BASE_URL", proxy.base_url())
            // Not a key: this run's secret for the proxy, which the core replaces by the key.
            .env("ANTHROPIC_API_KEY", proxy.secret())
            .env("ENABLE_TOOL_SEARCH", "false")
            .env("DISABLE_AUTOUPDATER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| BrainError::Failed(format!("cannot start {}: {e}", self.cli.display())))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut run = CliRun {
            mcp_status: None,
            result: None,
            servers: Value::Null,
            budget: None,
            too_large: false,
            resumed,
            compact_result: None,
        };
        loop {
            tokio::select! {
                conn = proxy.accept() => {
                    if let Ok(stream) = conn {
                        let p = proxy.serve(stream, tools).await?;
                        run.too_large |= p.too_large;
                        if p.budget.is_some() {
                            run.budget = p.budget;
                        }
                    }
                }
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    let Ok(ev) = serde_json::from_str::<Value>(&line) else { continue };
                    match (ev["type"].as_str(), ev["subtype"].as_str()) {
                        (Some("system"), Some("init")) => {
                            tracing::info!(mcp_servers = %ev["mcp_servers"], "Claude Code started");
                            run.servers = ev["mcp_servers"].clone();
                            run.mcp_status = ev["mcp_servers"]
                                .as_array()
                                .and_then(|s| s.iter().find(|x| x["name"] == "hive"))
                                .map(|x| x["status"].as_str().unwrap_or("").to_owned());
                        }
                        (Some("system"), Some("status")) if ev.get("compact_result").is_some() => {
                            run.compact_result = ev["compact_result"].as_str().map(str::to_owned);
                        }
                        (Some("result"), _) => run.result = Some(ev),
                        _ => {}
                    }
                }
            }
        }
        if let Err(e) = child.wait().await {
            tracing::warn!(error = %e, "could not wait for Claude Code");
        }
        if let Some(id) = new_session
            && let Err(e) = std::fs::write(&session_file, id)
        {
            tracing::warn!(error = %e, "could not record the session; the next turn starts a new one");
        }
        Ok(run)
    }
}

/// Whether a resumed run failed because its session cannot be resumed (too large for the hive
/// to forward, or gone): then a new session is started.
fn session_lost(run: &CliRun) -> bool {
    if !run.resumed {
        return false;
    }
    if run.too_large {
        return true;
    }
    let text = run
        .result
        .as_ref()
        .and_then(|r| r["result"].as_str())
        .unwrap_or("");
    run.result
        .as_ref()
        .is_some_and(|r| r["is_error"] == json!(true))
        && (text.contains("No conversation found") || text.contains("session"))
}

impl ClaudeCode {
    /// The session the next run resumes, if any.
    fn session(&self) -> Option<String> {
        std::fs::read_to_string(self.state_dir.join(SESSION_FILE))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }
}

impl Brain for ClaudeCode {
    /// `!new-session`: the session id is forgotten (the next message starts a new session);
    /// `!compact`: the CLI's own `/compact`, run headless on the resumed session.
    async fn control(&mut self, c: Control, tools: &mut Tools<'_>) -> Result<String, BrainError> {
        let Some(session) = self.session() else {
            return Ok(match c {
                Control::NewSession => "Nothing to forget: I have no session yet.".into(),
                Control::Compact => "Nothing to compact: I have no session yet.".into(),
            });
        };
        match c {
            Control::NewSession => {
                std::fs::remove_file(self.state_dir.join(SESSION_FILE))
                    .map_err(|e| BrainError::Failed(format!("cannot forget the session: {e}")))?;
                Ok(format!(
                    "Started a new session: my next message starts afresh (session `{session}` is forgotten)."
                ))
            }
            Control::Compact => {
                let run = self.run_cli("/compact", tools, false).await?;
                if let Some(b) = run.budget {
                    return Ok(format!("I could not compact my session: I am {b}."));
                }
                if session_lost(&run) {
                    return Ok("My session could not be resumed, so there was nothing to compact: my next message starts a new one.".into());
                }
                match (run.compact_result.as_deref(), run.result) {
                    (Some("success"), Some(r)) if r["is_error"] != json!(true) => {
                        Ok(format!("Compacted my Claude Code session `{session}`."))
                    }
                    (other, _) if other != Some("success") => Err(BrainError::Failed(format!(
                        "Claude Code did not compact the session (compact_result: {})",
                        other.unwrap_or("none reported")
                    ))),
                    (_, Some(r)) => Err(BrainError::Failed(format!(
                        "Claude Code could not compact the session: {}",
                        r["result"].as_str().unwrap_or("?")
                    ))),
                    (_, None) => Err(BrainError::Failed(
                        "Claude Code gave no result for /compact".into(),
                    )),
                }
            }
        }
    }

    async fn turn(&mut self, msg: &Message, tools: &mut Tools<'_>) -> Result<(), BrainError> {
        let prompt = super::prompt_of(msg);
        let mut run = self.run_cli(&prompt, tools, false).await?;
        let mut restarted = false;
        if session_lost(&run) {
            tracing::warn!("the session cannot be resumed; starting a new one");
            run = self.run_cli(&prompt, tools, true).await?;
            restarted = true;
        }
        if let Some(b) = run.budget {
            tools.stop_over_budget(&b).await?;
            return Ok(());
        }
        if run.too_large {
            return Err(BrainError::Failed(format!(
                "Claude Code sent a request larger than the {} MiB the hive forwards",
                MAX_REQUEST >> 20
            )));
        }
        match run.mcp_status.as_deref() {
            Some("connected") => {}
            other => {
                return Err(BrainError::Failed(format!(
                    "the hive's MCP server did not connect to Claude Code (status: {})",
                    other.unwrap_or("absent")
                )));
            }
        }
        let result = run
            .result
            .ok_or_else(|| BrainError::Failed("Claude Code gave no result".into()))?;
        let restart_note = restarted.then(|| {
            "_(My previous session could not be resumed (it had grown too large, or was gone), so I started a new one: I do not remember our earlier conversation.)_".to_owned()
        });
        let notes = [
            denials_note(&result),
            unconnected_note(&run.servers),
            restart_note,
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| format!("{a}\n\n{b}"));
        let text = result["result"].as_str().unwrap_or("").trim().to_owned();
        if result["is_error"] == json!(true) {
            return Err(BrainError::Failed(format!(
                "Claude Code reported an error ({}): {text}",
                result["subtype"].as_str().unwrap_or("?")
            )));
        }
        if result["subtype"] == "error_max_turns" {
            tools
                .say(&format!(
                    "I stopped after {} turns without finishing.",
                    self.max_turns
                ))
                .await?;
            return Ok(());
        }
        let text = match notes {
            Some(note) if text.is_empty() => note,
            Some(note) => format!("{text}\n\n{note}"),
            None => text,
        };
        if !text.is_empty() {
            tools.say(&text).await?;
        }
        Ok(())
    }
}

/// What the room is told when Claude Code denied tool uses in a turn (the tools' names only;
/// their inputs stay in the harness's log), or `None`.
fn denials_note(result: &Value) -> Option<String> {
    let denials = result["permission_denials"].as_array()?;
    if denials.is_empty() {
        return None;
    }
    let logged = Value::Array(denials.clone());
    tracing::warn!(denials = %logged, "Claude Code denied tool uses");
    let mut names: Vec<&str> = denials
        .iter()
        .map(|d| d["tool_name"].as_str().unwrap_or("a tool"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "_(Claude Code denied {} tool use{} this turn: {list}. Tools beyond the hive's are enabled in my agent.toml, `builtin_tools`.)_",
        denials.len(),
        if denials.len() == 1 { "" } else { "s" },
    ))
}

/// What the room is told when MCP servers the agent declares did not connect (the CLI goes on
/// without their tools), or `None`.
fn unconnected_note(servers: &Value) -> Option<String> {
    let down: Vec<String> = servers
        .as_array()?
        .iter()
        .filter(|s| s["name"] != "hive" && s["status"] != "connected")
        .map(|s| {
            format!(
                "`{}` ({})",
                s["name"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("no status")
            )
        })
        .collect();
    (!down.is_empty()).then(|| {
        format!(
            "_(These MCP servers of mine did not connect, so I worked without their tools: {}.)_",
            down.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_session_is_recognised() {
        let run = |resumed, too_large, result: Option<Value>| CliRun {
            mcp_status: None,
            result,
            servers: Value::Null,
            budget: None,
            too_large,
            resumed,
            compact_result: None,
        };
        let err = |t: &str| Some(json!({"is_error": true, "result": t}));
        assert!(session_lost(&run(true, true, None)));
        assert!(session_lost(&run(
            true,
            false,
            err("No conversation found with session ID: x")
        )));
        assert!(
            !session_lost(&run(false, true, None)),
            "a new session is not retried"
        );
        assert!(!session_lost(&run(true, false, err("API Error: 500"))));
        assert!(!session_lost(&run(
            true,
            false,
            Some(json!({"result": "ok"}))
        )));
    }

    #[test]
    fn declared_servers_that_did_not_connect_are_named() {
        let ok = json!([{"name": "hive", "status": "connected"}, {"name": "shout", "status": "connected"}]);
        assert_eq!(unconnected_note(&ok), None);
        assert_eq!(unconnected_note(&Value::Null), None);
        let bad =
            json!([{"name": "hive", "status": "connected"}, {"name": "ghost", "status": "failed"}]);
        assert_eq!(
            unconnected_note(&bad).unwrap(),
            "_(These MCP servers of mine did not connect, so I worked without their tools: `ghost` (failed).)_"
        );
    }

    #[test]
    fn permission_denials_are_named_for_the_room() {
        assert_eq!(denials_note(&json!({"result": "ok"})), None);
        assert_eq!(denials_note(&json!({"permission_denials": []})), None);
        let result = json!({"permission_denials": [
            {"tool_name": "Bash", "tool_use_id": "t1", "tool_input": {"command": "cat ~/.ssh/id_ed25519"}},
            {"tool_name": "Write", "tool_use_id": "t2", "tool_input": {"file_path": "/x"}},
            {"tool_name": "Bash", "tool_use_id": "t3", "tool_input": {"command": "ls"}},
        ]});
        let note = denials_note(&result).unwrap();
        assert!(
            note.contains("denied 3 tool uses this turn: `Bash`, `Write`."),
            "{note}"
        );
        assert!(!note.contains("ssh"), "inputs stay out of the room: {note}");
    }
}
