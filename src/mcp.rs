//! `hive mcp`: the hive's tools as a stdio MCP server, for Claude Code and any MCP client.
//!
//! `rmcp` (pinned in Cargo.toml) is used only here and in [`client`] (the servers an agent
//! declares, for the in-process brains). The server holds no policy and no state: the tool list
//! comes from hive-c0re, and every call is forwarded over the agent's tools socket, where the
//! core runs it under the agent's policy.
//!
//! A call the MCP client cancels (`notifications/cancelled`, or a client that gives up) drops
//! its connection instead of reading an answer nobody will see: the core notices the hang-up,
//! so a `recv` waiting in that call ends and pulls nothing, and one whose answer cannot be
//! written any more puts its messages back. The next call connects again.

pub mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use tokio::sync::Mutex;

use crate::wire::client::SocketClient;
use crate::wire::protocol::{Request, Response, ToolInfo};

#[derive(Clone)]
struct HiveTools {
    /// The tools connection; `None` after a call was cancelled or the connection broke.
    client: Arc<Mutex<Option<SocketClient>>>,
    tools: Arc<Vec<Tool>>,
    socket: Arc<PathBuf>,
    agent: Arc<str>,
}

/// How a forwarded call ended.
enum Forwarded {
    Answered(anyhow::Result<Response>),
    Cancelled,
}

/// A tools connection to hive-c0re for `agent`, greeted.
async fn connect(socket: &Path, agent: &str) -> anyhow::Result<SocketClient> {
    let mut client = SocketClient::connect(socket).await?;
    match client
        .call(&Request::Hello {
            agent: agent.to_owned(),
            pid: std::process::id(),
        })
        .await?
    {
        Response::Welcome { .. } => Ok(client),
        other => bail!("hive-c0re refused hive mcp for {agent}: {other:?}"),
    }
}

fn to_mcp(t: ToolInfo) -> Tool {
    let schema = match t.input_schema {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Tool::new(t.name, t.description, Arc::new(schema))
}

impl ServerHandler for HiveTools {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.server_info = Implementation::new("hive", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "The hive's tools: message other agents, keep notes, ask the operators, set reminders."
                .into(),
        );
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult {
            tools: self.tools.as_ref().clone(),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request
            .arguments
            .map(serde_json::Value::Object)
            .unwrap_or_else(|| serde_json::json!({}));
        let hive_err =
            |e: anyhow::Error| McpError::internal_error(format!("hive-c0re: {e:#}"), None);
        let mut held = self.client.lock().await;
        if held.is_none() {
            *held = Some(connect(&self.socket, &self.agent).await.map_err(hive_err)?);
        }
        let client = held.as_mut().expect("connected just now");
        let req = Request::CallTool {
            name: request.name.to_string(),
            arguments,
        };
        let forwarded = tokio::select! {
            r = client.call(&req) => Forwarded::Answered(r),
            () = context.ct.cancelled() => Forwarded::Cancelled,
        };
        let resp = match forwarded {
            Forwarded::Answered(Ok(resp)) => resp,
            Forwarded::Answered(Err(e)) => {
                *held = None;
                return Err(hive_err(e));
            }
            Forwarded::Cancelled => {
                // Hung up, so the core knows nobody reads this call's answer.
                *held = None;
                return Err(McpError::internal_error(
                    format!("{} was cancelled", request.name),
                    None,
                ));
            }
        };
        let (content, is_error) = match resp {
            Response::ToolResult { content, is_error } => (content, is_error),
            Response::Error { message, .. } => (message, true),
            other => (format!("unexpected answer from hive-c0re: {other:?}"), true),
        };
        let blocks = vec![ContentBlock::text(content)];
        Ok(if is_error {
            CallToolResult::error(blocks)
        } else {
            CallToolResult::success(blocks)
        }
        .into())
    }
}

/// Serves MCP on stdin/stdout until the client goes away.
pub async fn serve(socket: &Path, agent: &str) -> anyhow::Result<()> {
    let mut client = connect(socket, agent).await?;
    let tools = match client.call(&Request::ListTools {}).await? {
        Response::Tools { tools } => tools.into_iter().map(to_mcp).collect(),
        other => bail!("unexpected answer to list_tools: {other:?}"),
    };
    let server = HiveTools {
        client: Arc::new(Mutex::new(Some(client))),
        tools: Arc::new(tools),
        socket: Arc::new(socket.to_owned()),
        agent: Arc::from(agent),
    }
    .serve(rmcp::transport::stdio())
    .await
    .context("MCP handshake failed")?;
    server.waiting().await.context("MCP session failed")?;
    Ok(())
}
