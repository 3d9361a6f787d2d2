//! The per-run model proxy of the `claude-code` brain: a loopback HTTP/1.1 listener that the
//! CLI's `ANTHROPIC_BASE_URL` points at. Each Messages request goes to hive-c0re as a `model`
//! socket request (the core adds the key, enforces budgets, records usage); when the CLI asks
//! for a stream it is a `model_stream` request, and each server-sent event goes on to the CLI
//! the moment the core forwards it. Only the run's own CLI
//! holds the secret the proxy checks (its `ANTHROPIC_API_KEY`): any other local process that
//! finds the port is refused before its body is read, and spends nothing.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::brain::{BrainError, Tools};
use crate::wire::protocol::ErrorCode;

/// The largest request the proxy forwards: what the socket carries.
pub(crate) const MAX_REQUEST: usize = crate::wire::protocol::MAX_MODEL_REQUEST;

/// One run's proxy: its listener and the secret only that run's CLI holds.
pub(crate) struct Proxy {
    listener: TcpListener,
    port: u16,
    secret: String,
}

impl Proxy {
    /// Listens on a free loopback port, with a new secret.
    pub(crate) async fn open() -> Result<Self, BrainError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BrainError::Failed(format!("cannot open the model proxy: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| BrainError::Failed(e.to_string()))?
            .port();
        Ok(Self {
            listener,
            port,
            // Only this run's CLI gets it: the proxy serves nobody else on this machine.
            secret: crate::proc::random_secret(32),
        })
    }

    /// `ANTHROPIC_BASE_URL` for the CLI.
    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ANTHROPIC_API_KEY` for the CLI: not a key, the proxy's secret.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// The next connection to the proxy.
    pub(crate) async fn accept(&self) -> std::io::Result<TcpStream> {
        let (stream, _) = self.listener.accept().await?;
        // Each event is a small write passed on as it comes: no Nagle delay behind the last.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Serves one request on `stream` (see [`proxy_one`]).
    pub(crate) async fn serve(
        &self,
        stream: TcpStream,
        tools: &mut Tools<'_>,
    ) -> Result<Proxied, BrainError> {
        proxy_one(stream, &self.secret, tools).await
    }
}

/// A Messages API reply as the SSE events a streaming client expects (a provider that
/// answered a streamed call in one piece).
fn to_sse(message: &Value) -> String {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    let mut events = vec![json!({"type": "message_start", "message": start})];
    for (i, block) in message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        match block["type"].as_str() {
            Some("tool_use") => {
                let mut head = block.clone();
                head["input"] = json!({});
                events.push(
                    json!({"type": "content_block_start", "index": i, "content_block": head}),
                );
                events.push(json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}}));
            }
            Some("text") => {
                events.push(json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "text", "text": ""}}));
                events.push(json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "text_delta", "text": block["text"]}}));
            }
            _ => {
                events.push(
                    json!({"type": "content_block_start", "index": i, "content_block": block}),
                );
            }
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    events.push(json!({"type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": Value::Null},
        "usage": {"output_tokens": message["usage"]["output_tokens"]}}));
    events.push(json!({"type": "message_stop"}));
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// One HTTP/1.1 request from the CLI, as far as the proxy looks at it.
#[derive(Debug)]
struct ProxyRequest {
    line: String,
    /// `x-api-key`, or the token of `authorization: Bearer …` (checked while reading).
    #[cfg_attr(not(test), allow(dead_code))]
    key: Option<String>,
    body: Vec<u8>,
}

/// Why a request from the CLI was not read.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    /// Its body is over [`MAX_REQUEST`]: the session has outgrown what the hive forwards.
    TooLarge,
    /// Not this turn's client (no secret, or another).
    Unauthorized,
    Bad(String),
}

/// Reads one HTTP/1.1 request (headers and a Content-Length body) from the CLI.
/// With `secret`, a request without it is refused before its body is read.
async fn read_request(
    stream: &mut TcpStream,
    secret: Option<&str>,
) -> Result<ProxyRequest, ReadError> {
    let bad = |e: &dyn std::fmt::Display| ReadError::Bad(e.to_string());
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0usize;
    let mut key = None;
    loop {
        let mut line = String::new();
        let n = (&mut reader)
            .take(16 * 1024)
            .read_line(&mut line)
            .await
            .map_err(|e| bad(&e))?;
        if n == 0 {
            return Err(bad(&"connection closed"));
        }
        if head.len() > 64 * 1024 {
            return Err(bad(&"headers too large"));
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().map_err(|_| bad(&"bad content-length"))?;
            } else if k.eq_ignore_ascii_case("x-api-key") {
                key = Some(v.to_owned());
            } else if k.eq_ignore_ascii_case("authorization") {
                key = v.strip_prefix("Bearer ").map(str::to_owned).or(key);
            }
        }
        head.push_str(&line);
    }
    if length > MAX_REQUEST {
        return Err(ReadError::TooLarge);
    }
    // Nothing is allocated for a client without this turn's secret.
    if let Some(secret) = secret {
        let authentic = key.as_deref().is_some_and(|k| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                k.as_bytes(),
                secret.as_bytes(),
            ))
        });
        if !authentic {
            return Err(ReadError::Unauthorized);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.map_err(|e| bad(&e))?;
    Ok(ProxyRequest {
        line: head.lines().next().unwrap_or("").to_owned(),
        key,
        body,
    })
}

/// What one proxied request came to, for the turn.
#[derive(Debug, Default)]
pub(crate) struct Proxied {
    /// A budget refusal from the core.
    pub(crate) budget: Option<String>,
    /// The CLI sent a request the hive does not forward: its session is too large.
    pub(crate) too_large: bool,
}

/// Answers the CLI and closes the connection. A CLI that has gone away is logged: there is
/// nobody left to answer.
async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        stream.shutdown().await
    };
    if let Err(e) = written.await {
        tracing::warn!(error = %e, %status, "could not answer the Claude Code CLI");
    }
}

/// Serves one request of the CLI: a Messages call goes to the core; anything else is 404.
/// Only this turn's CLI knows `secret` (its `ANTHROPIC_API_KEY`): any other local process that
/// finds the port is refused, and spends nothing.
async fn proxy_one(
    mut stream: TcpStream,
    secret: &str,
    tools: &mut Tools<'_>,
) -> Result<Proxied, BrainError> {
    // A client that sends nothing must not hold up the turn.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read_request(&mut stream, Some(secret)),
    )
    .await
    .unwrap_or_else(|_| Err(ReadError::Bad("no request within 30 s".into())));
    let req = match read {
        Ok(r) => r,
        Err(ReadError::TooLarge) => {
            respond(&mut stream, "413 Payload Too Large", "application/json", br#"{"type":"error","error":{"type":"request_too_large","message":"the session is larger than the hive forwards"}}"#).await;
            return Ok(Proxied {
                too_large: true,
                ..Default::default()
            });
        }
        Err(ReadError::Unauthorized) => {
            tracing::warn!("refused a model request to the proxy without this turn's secret");
            respond(&mut stream, "401 Unauthorized", "application/json", br#"{"type":"error","error":{"type":"authentication_error","message":"not this turn's client"}}"#).await;
            return Ok(Proxied::default());
        }
        Err(ReadError::Bad(e)) => {
            tracing::debug!(error = %e, "bad request from the CLI");
            return Ok(Proxied::default());
        }
    };
    let (line, body) = (req.line, req.body);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    if !line.starts_with("POST ")
        || !path.starts_with("/v1/messages")
        || path.contains("count_tokens")
    {
        respond(&mut stream, "404 Not Found", "application/json", br#"{"type":"error","error":{"type":"not_found_error","message":"not served by the hive"}}"#).await;
        return Ok(Proxied::default());
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let streaming = request["stream"] == json!(true);
    if streaming {
        return restream(&mut stream, request, tools).await;
    }
    match tools.model(request).await? {
        Ok(message) => {
            respond(
                &mut stream,
                "200 OK",
                "application/json",
                message.to_string().as_bytes(),
            )
            .await;
            Ok(Proxied::default())
        }
        Err(e) => {
            let budget = (e.code == ErrorCode::Budget).then(|| e.message.clone());
            let err = json!({"type": "error", "error": {"type": "invalid_request_error", "message": e.message}});
            respond(
                &mut stream,
                "400 Bad Request",
                "application/json",
                err.to_string().as_bytes(),
            )
            .await;
            Ok(Proxied {
                budget,
                ..Default::default()
            })
        }
    }
}

/// Why a streamed answer to the CLI went as it did (what [`restream`] decided, step by step).
#[derive(Debug, PartialEq, Eq)]
enum Relay {
    /// The response head, before the first chunk.
    Head,
    /// One event, as the provider sent it.
    Event(String),
    /// A failure after the head: an SSE `error` event (the status line is sent already).
    ErrorEvent(String),
    /// A failure before any chunk: an HTTP error, as a non-streamed call answers.
    ErrorStatus(String),
    /// The answer came whole (the provider did not stream): its events in one response.
    Whole(String),
}

/// What the proxy writes for one step of a streamed call; `started` says whether the head is
/// out. A pure decision (the table is in the tests).
fn relay(step: &crate::brain::Streamed, started: bool) -> Vec<Relay> {
    use crate::brain::Streamed;
    match (step, started) {
        (Streamed::Chunk(ev), false) => vec![Relay::Head, Relay::Event(ev.clone())],
        (Streamed::Chunk(ev), true) => vec![Relay::Event(ev.clone())],
        (Streamed::Done(Ok(_)), true) => vec![],
        (Streamed::Done(Ok(message)), false) => vec![Relay::Whole(to_sse(message))],
        (Streamed::Done(Err(e)), true) => vec![Relay::ErrorEvent(e.message.clone())],
        (Streamed::Done(Err(e)), false) => vec![Relay::ErrorStatus(e.message.clone())],
    }
}

/// The head of a streamed answer: no length, the body ends when the connection closes.
const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";

/// A streamed Messages call: each event the core forwards goes on to the CLI the moment it
/// arrives; a failure mid-stream is an SSE `error` event, as Anthropic's own API sends one.
async fn restream(
    stream: &mut TcpStream,
    request: Value,
    tools: &mut Tools<'_>,
) -> Result<Proxied, BrainError> {
    let mut call = tools.model_stream(request).await?;
    let mut started = false;
    let mut gone = false;
    loop {
        let step = call.next().await?;
        for out in relay(&step, started) {
            let written = match &out {
                Relay::Head => stream.write_all(SSE_HEAD.as_bytes()).await,
                Relay::Event(ev) => stream.write_all(format!("{ev}\n\n").as_bytes()).await,
                Relay::ErrorEvent(message) => {
                    let err = json!({"type": "error", "error": {"type": "api_error", "message": message}});
                    stream
                        .write_all(format!("event: error\ndata: {err}\n\n").as_bytes())
                        .await
                }
                Relay::Whole(events) => {
                    respond(stream, "200 OK", "text/event-stream", events.as_bytes()).await;
                    Ok(())
                }
                Relay::ErrorStatus(message) => {
                    let err = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
                    respond(
                        stream,
                        "400 Bad Request",
                        "application/json",
                        err.to_string().as_bytes(),
                    )
                    .await;
                    Ok(())
                }
            };
            started |= out == Relay::Head;
            // The CLI went away: the core's call still runs to its end (and is recorded).
            if let Err(e) = written
                && !gone
            {
                tracing::warn!(error = %e, "the Claude Code CLI left mid-stream");
                gone = true;
            }
        }
        if let crate::brain::Streamed::Done(result) = step {
            if started && let Err(e) = stream.shutdown().await {
                tracing::debug!(error = %e, "closing the CLI's stream");
            }
            let budget = match result {
                Err(e) if e.code == ErrorCode::Budget => Some(e.message),
                _ => None,
            };
            return Ok(Proxied {
                budget,
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_answers_are_relayed_as_they_come() {
        use crate::brain::Streamed;
        use crate::wire::client::ToolError;
        struct Case {
            name: &'static str,
            step: Streamed,
            started: bool,
            want: Vec<Relay>,
        }
        let err = || {
            Err(ToolError {
                code: ErrorCode::Model,
                message: "too large".into(),
            })
        };
        let ev = "event: ping\ndata: {}".to_owned();
        let cases = [
            Case {
                name: "the first chunk sends the head, then itself",
                step: Streamed::Chunk(ev.clone()),
                started: false,
                want: vec![Relay::Head, Relay::Event(ev.clone())],
            },
            Case {
                name: "a later chunk goes on alone",
                step: Streamed::Chunk(ev.clone()),
                started: true,
                want: vec![Relay::Event(ev.clone())],
            },
            Case {
                name: "the end of a stream adds nothing",
                step: Streamed::Done(Ok(json!({}))),
                started: true,
                want: vec![],
            },
            Case {
                name: "an answer that came whole is sent whole, as events",
                step: Streamed::Done(Ok(json!({"content": [], "usage": {"output_tokens": 1}}))),
                started: false,
                want: vec![Relay::Whole(to_sse(
                    &json!({"content": [], "usage": {"output_tokens": 1}}),
                ))],
            },
            Case {
                name: "a failure mid-stream is an error event",
                step: Streamed::Done(err()),
                started: true,
                want: vec![Relay::ErrorEvent("too large".into())],
            },
            Case {
                name: "a failure before any chunk is an HTTP error",
                step: Streamed::Done(err()),
                started: false,
                want: vec![Relay::ErrorStatus("too large".into())],
            },
        ];
        for c in cases {
            assert_eq!(relay(&c.step, c.started), c.want, "{}", c.name);
        }
    }

    /// The proxy serves only the client holding this turn's secret; a request over the limit
    /// is marked as a session too large to resume.
    #[tokio::test]
    async fn the_proxy_serves_only_its_own_cli() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let send = |head: String, body: Vec<u8>| async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(head.as_bytes()).await.unwrap();
            c.write_all(&body).await.unwrap();
            c
        };
        let cases = [
            (None, Some("hello")),
            (Some("x-api-key: wrong"), Some("hello")),
            (Some("x-api-key: s3cret"), Some("hello")),
            (Some("authorization: Bearer s3cret"), Some("hello")),
        ];
        let mut keys = Vec::new();
        for (header, body) in cases {
            let body = body.unwrap().as_bytes().to_vec();
            let head = format!(
                "POST /v1/messages HTTP/1.1\r\n{}content-length: {}\r\n\r\n",
                header.map(|h| format!("{h}\r\n")).unwrap_or_default(),
                body.len()
            );
            let _client = send(head, body).await;
            let (mut stream, _) = listener.accept().await.unwrap();
            keys.push(read_request(&mut stream, None).await.unwrap().key);
        }
        assert_eq!(
            keys,
            [
                None,
                Some("wrong".into()),
                Some("s3cret".into()),
                Some("s3cret".into())
            ]
        );
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            MAX_REQUEST + 1
        );
        let _client = send(head, Vec::new()).await;
        let (mut stream, _) = listener.accept().await.unwrap();
        assert_eq!(
            read_request(&mut stream, None).await.unwrap_err(),
            ReadError::TooLarge
        );
        // With the secret: a wrong key is refused before the body is read.
        let head = "POST /v1/messages HTTP/1.1\r\nx-api-key: wrong\r\ncontent-length: 5\r\n\r\n";
        let _client = send(head.to_owned(), Vec::new()).await;
        let (mut stream, _) = listener.accept().await.unwrap();
        assert_eq!(
            read_request(&mut stream, Some("s3cret")).await.unwrap_err(),
            ReadError::Unauthorized
        );
        let head = "POST /v1/messages HTTP/1.1\r\nx-api-key: s3cret\r\ncontent-length: 5\r\n\r\n";
        let _client = send(head.to_owned(), b"hello".to_vec()).await;
        let (mut stream, _) = listener.accept().await.unwrap();
        assert_eq!(
            read_request(&mut stream, Some("s3cret"))
                .await
                .unwrap()
                .body,
            b"hello"
        );
    }
}
