//! The harness's side of the socket (and `hive mcp`'s): one request, one response.

use std::path::Path;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::protocol::{ErrorCode, Request, Response};

pub struct SocketClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

/// A tool call the core refused; the brain sees it (an LLM can react to it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    pub code: ErrorCode,
    pub message: String,
}

impl SocketClient {
    pub async fn connect(path: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(path)
            .await
            .with_context(|| format!("cannot connect to {}", path.display()))?;
        let (r, w) = stream.into_split();
        Ok(Self {
            reader: BufReader::new(r),
            writer: w,
            line: String::new(),
        })
    }

    pub async fn call(&mut self, req: &Request) -> anyhow::Result<Response> {
        self.send(req).await?;
        self.read().await
    }

    /// Writes one request without reading its answer (`model_stream`: several lines come back;
    /// read each with [`SocketClient::read`]).
    pub async fn send(&mut self, req: &Request) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(req)?;
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .await
            .context("hive-c0re went away")
    }

    /// Reads the core's next answer line.
    pub async fn read(&mut self) -> anyhow::Result<Response> {
        self.line.clear();
        if self
            .reader
            .read_line(&mut self.line)
            .await
            .context("hive-c0re went away")?
            == 0
        {
            bail!("hive-c0re closed the connection");
        }
        serde_json::from_str(self.line.trim_end())
            .with_context(|| format!("bad response from hive-c0re: {:?}", self.line))
    }

    /// A call whose only success is `sent`: returns the event id, or the core's refusal.
    pub async fn tool(&mut self, req: &Request) -> anyhow::Result<Result<String, ToolError>> {
        match self.call(req).await? {
            Response::Sent { event_id } => Ok(Ok(event_id)),
            Response::Requested { approval_id } => Ok(Ok(approval_id.to_string())),
            Response::Asked { question_id } => Ok(Ok(question_id.to_string())),
            Response::Error { code, message } => Ok(Err(ToolError { code, message })),
            other => bail!("unexpected response {other:?}"),
        }
    }
}
