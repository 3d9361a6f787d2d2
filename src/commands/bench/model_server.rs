//! The bench's local model server: OpenAI chat completions and Anthropic Messages, streamed
//! (server-sent events) with [`Pace::tokens`] text tokens sent [`Pace::spacing`] apart, the
//! first at once. Plain HTTP/1.1 over loopback, one request per connection (`connection:
//! close`), so the direct baseline and the hive path pay the same connection set-up.
//!
//! Anthropic's prompt caching is emulated as its documentation states the rule (a faithful
//! emulation of the documented rule, not the service): a request is the blocks tools → system
//! → messages; a `cache_control` marks a breakpoint; at each breakpoint the prefix up to it is
//! looked up, and so is every prefix ending up to [`LOOKBACK`] blocks before it; the longest
//! prefix written before is billed as `cache_read_input_tokens`, the rest up to the last
//! breakpoint as `cache_creation_input_tokens` (and written), what follows it as
//! `input_tokens`. A prefix under [`MIN_CACHEABLE`] tokens is not cached. Tokens are counted
//! as bytes / 4.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Blocks before a breakpoint where the provider also looks for a hit (Anthropic: about 20).
pub const LOOKBACK: usize = 20;
/// The shortest prefix cached, in tokens (Anthropic's minimum for its Sonnet/Opus models).
pub const MIN_CACHEABLE: u64 = 1024;

/// How the server streams a text answer.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub tokens: usize,
    pub spacing: Duration,
}

/// The running server: its base URL (no path).
pub struct ModelServer {
    pub base: String,
}

/// One request's input tokens as the emulated cache bills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheUsage {
    pub input: u64,
    pub read: u64,
    pub write: u64,
}

/// Starts the server on a free loopback port; it runs until the process ends.
pub async fn start(pace: Pace) -> anyhow::Result<ModelServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cache: Arc<Mutex<HashSet<u64>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let cache = cache.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(conn, pace, &cache).await {
                    tracing::debug!(error = %format!("{e:#}"), "bench model server");
                }
            });
        }
    });
    Ok(ModelServer { base })
}

/// Reads one request (head and a content-length body); (request line, body).
pub(super) async fn read_http(conn: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the head ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse())
        .transpose()?
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the body ended");
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head.lines().next().unwrap_or("").to_owned(), body))
}

async fn serve(mut conn: TcpStream, pace: Pace, cache: &Mutex<HashSet<u64>>) -> anyhow::Result<()> {
    let (line, body) = read_http(&mut conn).await?;
    let body: Value = serde_json::from_slice(&body)?;
    let anthropic = line.contains("/v1/messages");
    let streamed = body["stream"] == json!(true);
    let usage = if anthropic {
        let u = cache_usage(&body, &mut cache.lock().unwrap_or_else(|p| p.into_inner()));
        json!({"input_tokens": u.input, "cache_read_input_tokens": u.read,
               "cache_creation_input_tokens": u.write, "output_tokens": pace.tokens})
    } else {
        json!({"prompt_tokens": tokens_of(&body["messages"].to_string()),
               "completion_tokens": pace.tokens})
    };
    let tool_use = anthropic && wants_tool_use(&body);
    if !streamed {
        let answer = if anthropic {
            let content = if tool_use {
                json!([tool_use_block()])
            } else {
                json!([{"type": "text", "text": "tok ".repeat(pace.tokens)}])
            };
            json!({"type": "message", "role": "assistant", "content": content,
                   "stop_reason": if tool_use { "tool_use" } else { "end_turn" }, "usage": usage})
        } else {
            json!({"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "tok ".repeat(pace.tokens)}}], "usage": usage})
        };
        let text = answer.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            text.len()
        );
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(text.as_bytes()).await?;
        return Ok(());
    }
    conn.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n",
    )
    .await?;
    let send = |e: Value| {
        if anthropic {
            format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or(""))
        } else {
            format!("data: {e}\n\n")
        }
    };
    if anthropic {
        let mut start = usage.clone();
        start["output_tokens"] = json!(1);
        conn.write_all(
            send(
                json!({"type": "message_start", "message": {"type": "message",
            "role": "assistant", "content": [], "usage": start}}),
            )
            .as_bytes(),
        )
        .await?;
        if tool_use {
            let mut head = tool_use_block();
            let input = head["input"].to_string();
            head["input"] = json!({});
            let events = [
                json!({"type": "content_block_start", "index": 0, "content_block": head}),
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "input_json_delta", "partial_json": input}}),
            ];
            for e in events {
                conn.write_all(send(e).as_bytes()).await?;
            }
        } else {
            conn.write_all(
                send(json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}))
                .as_bytes(),
            )
            .await?;
        }
    }
    if !tool_use {
        for i in 0..pace.tokens {
            if i > 0 {
                tokio::time::sleep(pace.spacing).await;
            }
            let e = if anthropic {
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": "tok "}})
            } else {
                json!({"choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": null}]})
            };
            conn.write_all(send(e).as_bytes()).await?;
        }
    }
    let tail: Vec<String> = if anthropic {
        vec![
            send(json!({"type": "content_block_stop", "index": 0})),
            send(json!({"type": "message_delta",
                "delta": {"stop_reason": if tool_use { "tool_use" } else { "end_turn" }},
                "usage": {"output_tokens": pace.tokens}})),
            send(json!({"type": "message_stop"})),
        ]
    } else {
        vec![
            send(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}),
            ),
            "data: [DONE]\n\n".to_owned(),
        ]
    };
    conn.write_all(tail.concat().as_bytes()).await?;
    conn.shutdown().await?;
    Ok(())
}

/// The scripted conversation of the cache section: a request offering `write_notes` whose last
/// message holds no tool result gets a `write_notes` call; anything else a text answer.
fn wants_tool_use(body: &Value) -> bool {
    let offers = body["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == "write_notes"));
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].clone())
        .unwrap_or(Value::Null);
    let answered = last
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
    offers && !answered
}

fn tool_use_block() -> Value {
    json!({"type": "tool_use", "id": format!("tu{}", crate::proc::random_secret(8)),
           "name": "write_notes", "input": {"notes": "bench"}})
}

/// Tokens of a text, as the emulation counts them.
fn tokens_of(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The request's blocks in cache order (tools, system, messages), each as the text it is
/// hashed and counted as (its `cache_control` left out), and whether it is a breakpoint.
fn blocks(body: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut push = |prefix: &str, b: &Value| {
        let marked = b.get("cache_control").is_some();
        let mut b = b.clone();
        if let Some(o) = b.as_object_mut() {
            o.remove("cache_control");
        }
        out.push((format!("{prefix}{b}"), marked));
    };
    let text = |s: &str| json!({"type": "text", "text": s});
    for t in body["tools"].as_array().into_iter().flatten() {
        push("tool:", t);
    }
    match &body["system"] {
        Value::String(s) => push("system:", &text(s)),
        Value::Array(a) => a.iter().for_each(|b| push("system:", b)),
        _ => {}
    }
    for m in body["messages"].as_array().into_iter().flatten() {
        let role = format!("{}:", m["role"].as_str().unwrap_or(""));
        match &m["content"] {
            Value::String(s) => push(&role, &text(s)),
            Value::Array(a) => a.iter().for_each(|b| push(&role, b)),
            _ => {}
        }
    }
    out
}

/// A request's input billed by the documented caching rule (see the module doc), writing its
/// breakpoints' prefixes to `cache`.
pub fn cache_usage(body: &Value, cache: &mut HashSet<u64>) -> CacheUsage {
    let blocks = blocks(body);
    let mut hashes = Vec::with_capacity(blocks.len());
    let mut cum = Vec::with_capacity(blocks.len());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut total = 0;
    for (text, _) in &blocks {
        text.hash(&mut h);
        hashes.push(h.finish());
        total += tokens_of(text);
        cum.push(total);
    }
    let breakpoints: Vec<usize> = (0..blocks.len()).filter(|&i| blocks[i].1).collect();
    let Some(&last) = breakpoints.last() else {
        return CacheUsage {
            input: total,
            ..Default::default()
        };
    };
    let read = breakpoints
        .iter()
        .filter_map(|&b| {
            (b.saturating_sub(LOOKBACK)..=b)
                .rev()
                .find(|&j| cache.contains(&hashes[j]))
                .map(|j| cum[j])
        })
        .max()
        .unwrap_or(0);
    let cached_to = if cum[last] >= MIN_CACHEABLE {
        for &b in &breakpoints {
            if cum[b] >= MIN_CACHEABLE {
                cache.insert(hashes[b]);
            }
        }
        cum[last]
    } else {
        read
    };
    CacheUsage {
        input: total - cached_to.max(read),
        read,
        write: cached_to.saturating_sub(read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulated_cache_follows_the_documented_rule() {
        let big = "x".repeat(4 * 2000);
        let eph = json!({"type": "ephemeral"});
        let req = |messages: Value| json!({"system": [{"type": "text", "text": big, "cache_control": eph}], "messages": messages});
        let user = |t: &str, marked: bool| {
            let mut b = json!({"type": "text", "text": t});
            if marked {
                b["cache_control"] = eph.clone();
            }
            json!({"role": "user", "content": [b]})
        };
        struct Case {
            name: &'static str,
            body: Value,
            want_read: bool,
            want_write: bool,
        }
        let cases = [
            Case {
                name: "first call: the prefix is written",
                body: req(json!([user("q1", true)])),
                want_read: false,
                want_write: true,
            },
            Case {
                name: "the same prefix again: read, nothing new written",
                body: req(json!([user("q1", true)])),
                want_read: true,
                want_write: false,
            },
            Case {
                name: "a longer conversation: the old prefix read, the new part written",
                body: req(
                    json!([user("q1", false), {"role": "assistant", "content": "a1"}, user("q2", true)]),
                ),
                want_read: true,
                want_write: true,
            },
        ];
        let mut cache = HashSet::new();
        for c in cases {
            let u = cache_usage(&c.body, &mut cache);
            assert_eq!(
                (u.read > 0, u.write > 0),
                (c.want_read, c.want_write),
                "{}: {u:?}",
                c.name
            );
        }
        // No marks: everything is input, nothing cached.
        let plain = json!({"system": big, "messages": [{"role": "user", "content": "q"}]});
        let u = cache_usage(&plain, &mut HashSet::new());
        assert_eq!((u.read, u.write), (0, 0));
        assert!(u.input > MIN_CACHEABLE);
        // Under the minimum: not cached, all input.
        let small = json!({"system": [{"type": "text", "text": "s", "cache_control": eph}], "messages": []});
        let mut c = HashSet::new();
        cache_usage(&small, &mut c);
        assert_eq!(cache_usage(&small, &mut c).read, 0);
    }
}
