//! The MCP servers an agent declares in `agent.toml` (`[brain.mcp_servers.<name>]`), as a
//! client, for the brains that run the model loop in the harness (`openai`, `anthropic`).
//! (`claude-code` hands the same declarations to the CLI, which is its own MCP client.)
//!
//! Each server is a child of the harness, inside the agent's runtime
//! ([`crate::proc::harness_child`]): its working directory is the agent's state dir, its
//! environment holds only `PATH`, `HOME`, `LANG` and the `env` its declaration gives. Its tools are offered to the model as `mcp__<server>__<tool>`, the names
//! Claude Code uses. A server that does not start, or dies, is left out of the turn (the model
//! is told which and why) and started again on the next turn.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use serde_json::Value;

use crate::agent_spec::AgentSpec;
use crate::wire::protocol::ToolInfo;

/// Starting a server and listing its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed start, turns go on without the server for this long before it is tried
/// again (a server that hangs at start must not cost every turn its timeout).
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// One tool call.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// A tool's result handed to the model, at most (bytes).
const MAX_RESULT: usize = 64 * 1024;
/// Model APIs accept tool names of `[A-Za-z0-9_-]{1,64}`.
const MAX_TOOL_NAME: usize = 64;

struct Declared {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

struct Running {
    service: RunningService<RoleClient, ()>,
    tools: Vec<ToolInfo>,
    /// Killed when dropped (`kill_on_drop`), with the service.
    _child: tokio::process::Child,
}

/// The agent's declared servers: started on first use, restarted after a failure.
pub struct DeclaredServers {
    declared: Vec<Declared>,
    state_dir: PathBuf,
    running: BTreeMap<String, Running>,
    /// Servers that failed to start: when, and why.
    failed: BTreeMap<String, (tokio::time::Instant, String)>,
}

/// The tools of the servers that run, and why the others do not.
pub struct Offered {
    pub tools: Vec<ToolInfo>,
    pub unavailable: Vec<(String, String)>,
}

impl DeclaredServers {
    pub fn new(spec: &AgentSpec, state_dir: &Path) -> Self {
        let declared = spec
            .brain
            .mcp_servers()
            .into_iter()
            .flatten()
            .filter_map(|(name, s)| {
                let (program, args) = s.argv(&spec.dir)?;
                Some(Declared {
                    name: name.clone(),
                    program,
                    args: args.to_vec(),
                    env: s.env.clone(),
                })
            })
            .collect();
        Self {
            declared,
            state_dir: state_dir.to_owned(),
            running: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.declared.is_empty()
    }

    /// Starts every declared server that is not running and lists the tools on offer.
    pub async fn offer(&mut self) -> Offered {
        let mut unavailable = Vec::new();
        for d in &self.declared {
            if self.running.contains_key(&d.name) {
                continue;
            }
            if let Some((at, why)) = self.failed.get(&d.name)
                && at.elapsed() < RETRY_AFTER
            {
                unavailable.push((d.name.clone(), why.clone()));
                continue;
            }
            let why = match tokio::time::timeout(START_TIMEOUT, start(d, &self.state_dir)).await {
                Ok(Ok(r)) => {
                    tracing::info!(server = %d.name, tools = r.tools.len(), "MCP server started");
                    self.running.insert(d.name.clone(), r);
                    self.failed.remove(&d.name);
                    continue;
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("it did not start within {}s", START_TIMEOUT.as_secs()),
            };
            tracing::warn!(server = %d.name, %why, "MCP server unavailable");
            self.failed
                .insert(d.name.clone(), (tokio::time::Instant::now(), why.clone()));
            unavailable.push((d.name.clone(), why));
        }
        Offered {
            tools: self
                .running
                .values()
                .flat_map(|r| r.tools.iter().cloned())
                .collect(),
            unavailable,
        }
    }

    /// Whether `tool` is one of the declared servers' (`mcp__<server>__<tool>`).
    pub fn owns(tool: &str) -> bool {
        tool.starts_with("mcp__")
    }

    /// Calls `mcp__<server>__<tool>`: (result text, is_error). A server that fails at the
    /// transport is stopped; the next turn starts it again.
    pub async fn call(&mut self, tool: &str, arguments: Value) -> (String, bool) {
        let Some((server, name)) = tool
            .strip_prefix("mcp__")
            .and_then(|rest| rest.split_once("__"))
        else {
            return (format!("there is no tool {tool:?}"), true);
        };
        let Some(running) = self.running.get(server) else {
            return (format!("the MCP server {server:?} is not running"), true);
        };
        if !running.tools.iter().any(|t| t.name == tool) {
            return (
                format!("the MCP server {server:?} has no tool {name:?}"),
                true,
            );
        }
        let arguments = match arguments {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => {
                return (
                    format!("the arguments must be a JSON object, not {other}"),
                    true,
                );
            }
        };
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        match tokio::time::timeout(CALL_TIMEOUT, running.service.call_tool(params)).await {
            Ok(Ok(result)) => {
                let mut text = result
                    .content
                    .iter()
                    .map(block_text)
                    .collect::<Vec<_>>()
                    .join("\n");
                if text.is_empty()
                    && let Some(s) = &result.structured_content
                {
                    text = s.to_string();
                }
                (truncate(text), result.is_error.unwrap_or(false))
            }
            Ok(Err(rmcp::service::ServiceError::McpError(e))) => {
                (format!("{server}: {}", e.message), true)
            }
            Ok(Err(e)) => {
                tracing::warn!(%server, error = %e, "MCP server failed; it restarts next turn");
                self.running.remove(server);
                (format!("the MCP server {server:?} failed: {e}"), true)
            }
            Err(_) => {
                tracing::warn!(%server, "MCP tool call timed out; the server restarts next turn");
                self.running.remove(server);
                (
                    format!("{tool} did not answer within {}s", CALL_TIMEOUT.as_secs()),
                    true,
                )
            }
        }
    }
}

/// Starts one declared server and lists its tools; the error says why not, for the model and
/// the log (nobody branches on it).
async fn start(d: &Declared, state_dir: &Path) -> anyhow::Result<Running> {
    let mut cmd = tokio::process::Command::new(&d.program);
    crate::proc::harness_child(&mut cmd, state_dir)
        .args(&d.args)
        .current_dir(state_dir)
        .envs(&d.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot run {}: {e}", d.program.display()))?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        bail!("no pipes to the server");
    };
    let service =
        ().serve((stdout, stdin))
            .await
            .map_err(|e| anyhow!("the MCP handshake failed: {e}"))?;
    let listed = service
        .list_all_tools()
        .await
        .map_err(|e| anyhow!("tools/list failed: {e}"))?;
    let mut tools = Vec::new();
    for t in listed {
        let full = format!("mcp__{}__{}", d.name, t.name);
        if full.len() > MAX_TOOL_NAME
            || !full
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            tracing::warn!(server = %d.name, tool = %t.name, "tool left out: its name does not fit model APIs ([A-Za-z0-9_-], 64 in all)");
            continue;
        }
        tools.push(ToolInfo {
            name: full,
            description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
        });
    }
    Ok(Running {
        service,
        tools,
        _child: child,
    })
}

fn block_text(b: &ContentBlock) -> String {
    match b {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(i) => format!("[an image, {}]", i.mime_type),
        ContentBlock::Audio(a) => format!("[audio, {}]", a.mime_type),
        ContentBlock::Resource(r) => match &r.resource {
            rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
            other => format!("[a resource: {}]", resource_uri(other)),
        },
        ContentBlock::ResourceLink(l) => format!("[a link: {}]", l.uri),
        _ => "[content of a kind this hive does not read]".into(),
    }
}

fn resource_uri(r: &rmcp::model::ResourceContents) -> String {
    match r {
        rmcp::model::ResourceContents::TextResourceContents { uri, .. }
        | rmcp::model::ResourceContents::BlobResourceContents { uri, .. } => uri.clone(),
        #[allow(unreachable_patterns)]
        _ => "?".into(),
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_RESULT {
        let mut cut = MAX_RESULT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[truncated]");
    }
    text
}
