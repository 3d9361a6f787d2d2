//! `model_stream` on a real hive (Synapse, the core, the external runtime: the test is the
//! harness): the core passes a streamed answer on as it arrives, before the stream ends (the
//! fake server holds its last chunks until the test has seen the first one through the hive);
//! usage and cache reads are recorded from a streamed answer; the size cap still cuts a stream,
//! what the harness may put in `cache_control` is the core's to allow, and a raw request that
//! names its own model, stream, key or endpoint reaches the provider with the config's (the
//! request-field allow-list). The stand-in keeps the APIs' contracts (`common::model_api`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestHive;
use common::model_api::{Contract, anthropic_violations, openai_violations, wants_usage};
use hyperhive::wire::client::SocketClient;
use hyperhive::wire::protocol::{ErrorCode, Request, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(45);
const KEY: &str = "hh-test-stream-key-0a9b8c7d";

/// What the stand-in received: (the request line, its credential header, its body).
type Received = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A model server that streams: the first event at once, the rest only after `release` is
/// notified. A request whose last message says `big` gets an endless stream instead; one
/// that does not ask for a stream, one JSON answer. A request the real API would refuse is
/// recorded in `contract` and answered 400.
async fn holding_server(release: Arc<Notify>, received: Received, contract: Contract) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let (release, received, contract) =
                (release.clone(), received.clone(), contract.clone());
            tokio::spawn(async move {
                let (line, headers, body) = read_request(&mut conn).await;
                let anthropic = line.contains("/v1/messages");
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                let key = if anthropic {
                    header("x-api-key")
                } else {
                    header("authorization")
                };
                received
                    .lock()
                    .unwrap()
                    .push((line.clone(), key, body.clone()));
                let (api, why) = if anthropic {
                    let version = header("anthropic-version");
                    ("anthropic", anthropic_violations(version.as_deref(), &body))
                } else {
                    ("openai", openai_violations(&body))
                };
                if let Some(first) = contract.record(api, why, &body) {
                    let error = json!({"error": {"message": first}}).to_string();
                    let answer = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{error}",
                        error.len()
                    );
                    conn.write_all(answer.as_bytes()).await.ok();
                    return;
                }
                if body["stream"] != json!(true) {
                    let answer = if anthropic {
                        json!({"type": "message", "role": "assistant", "model": body["model"],
                            "content": [{"type": "text", "text": "plain"}], "stop_reason": "end_turn",
                            "usage": {"input_tokens": 1, "output_tokens": 1}})
                    } else {
                        json!({"object": "chat.completion", "model": body["model"], "choices": [{"index": 0,
                            "message": {"role": "assistant", "content": "plain"}, "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
                    }
                    .to_string();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    conn.write_all(answer.as_bytes()).await.ok();
                    return;
                }
                let header = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                conn.write_all(header.as_bytes()).await.unwrap();
                let big = body["messages"].to_string().contains("big");
                let (first, rest) = if anthropic {
                    anthropic_events()
                } else {
                    openai_events(wants_usage(&body))
                };
                if big {
                    let chunk = first.repeat(256);
                    while conn.write_all(chunk.as_bytes()).await.is_ok() {}
                    return;
                }
                conn.write_all(first.as_bytes()).await.unwrap();
                // Held until the test saw the first event arrive through the hive.
                release.notified().await;
                conn.write_all(rest.as_bytes()).await.ok();
                conn.shutdown().await.ok();
            });
        }
    });
    base
}

/// (the request line, the headers with lowercase names, the JSON body).
async fn read_request(conn: &mut tokio::net::TcpStream) -> (String, Vec<(String, String)>, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..n]);
    }
    (
        head.lines().next().unwrap().to_owned(),
        headers,
        serde_json::from_slice(&body).unwrap(),
    )
}

/// (the first event, the rest) of an OpenAI stream: "Hel", "lo", usage with cached tokens
/// if `usage` was asked for (`stream_options.include_usage`: the real API sends none unasked).
fn openai_events(usage: bool) -> (String, String) {
    let ev = |v: Value| format!("data: {v}\n\n");
    let usage = usage.then(|| {
        ev(
            json!({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 60}}}),
        )
    });
    (
        ev(json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]})),
        [
            ev(json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]})),
            usage.unwrap_or_default(),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat(),
    )
}

/// (the first event, the rest) of an Anthropic stream with cache reads and writes.
fn anthropic_events() -> (String, String) {
    let ev = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap());
    (
        ev(json!({"type": "message_start", "message": {"role": "assistant", "content": [],
            "usage": {"input_tokens": 7, "cache_read_input_tokens": 900,
                      "cache_creation_input_tokens": 50, "output_tokens": 1}}})),
        [
            ev(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            ev(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})),
            ev(json!({"type": "content_block_stop", "index": 0})),
            ev(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}})),
            ev(json!({"type": "message_stop"})),
        ]
        .concat(),
    )
}

async fn read(c: &mut SocketClient) -> Response {
    tokio::time::timeout(Duration::from_secs(20), c.read())
        .await
        .expect("the core said nothing within 20 s: it held the stream back")
        .unwrap()
}

/// A streamed call: the first chunk arrives while the server still holds the rest; then the
/// chunks in order and the assembled answer.
async fn streamed(c: &mut SocketClient, release: &Notify, request: Value) -> (Vec<String>, Value) {
    c.send(&Request::ModelStream { request }).await.unwrap();
    let mut chunks = match read(c).await {
        Response::ModelChunk { event } => vec![event],
        other => panic!("not a chunk first: {other:?}"),
    };
    release.notify_one();
    loop {
        match read(c).await {
            Response::ModelChunk { event } => chunks.push(event),
            Response::ModelResponse { body } => return (chunks, body),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_model_calls_pass_chunks_on_as_they_arrive() {
    let release = Arc::new(Notify::new());
    let received = Received::default();
    let contract = Contract::default();
    let base = holding_server(release.clone(), received.clone(), contract.clone()).await;
    let (_keys, key) = common::secret_file("model.key", KEY);
    let bot = |kind: &str, model: &str, provider: &str| {
        format!("[brain]\nkind = \"{kind}\"\nmodel = \"{model}\"\nprovider = \"{provider}\"\n")
    };
    let mut hive = TestHive::with_config(
        &[
            ("gpts", bot("openai", "m", "local")),
            ("claudes", bot("anthropic", "c", "localant")),
        ],
        &format!(
            "[runtime]\nkind = \"external\"\n\
             [providers.local]\nkind = \"openai\"\nbase_url = \"{base}/v1\"\nmodels = [\"m\"]\napi_key_file = {key:?}\n\
             [providers.localant]\nkind = \"anthropic\"\nbase_url = \"{base}\"\nmodels = [\"c\"]\napi_key_file = {key:?}\n\
             [prices.\"c\"]\ninput = 3.0\noutput = 15.0\ncache_read = 0.3\ncache_write = 3.75\n"
        ),
    )
    .await;
    hive.start_core();
    let op = hive.operator().await;
    let store = hyperhive::store::Store::open(&hive.data.join("c0re.db")).unwrap();
    let mut conns = Vec::new();
    for name in ["gpts", "claudes"] {
        let mut c = common::hello_socket(&hive, name, "c0re.sock", WAIT).await;
        // Outside a turn, a streamed call is refused like a plain one.
        c.send(&Request::ModelStream {
            request: json!({"messages": []}),
        })
        .await
        .unwrap();
        match read(&mut c).await {
            Response::Error { code, .. } => assert_eq!(code, ErrorCode::BadRequest),
            other => panic!("{other:?}"),
        }
        let room = op.join(&format!("agent-{name}")).await;
        op.send(&room, "hello").await;
        let id = match tokio::time::timeout(WAIT, c.call(&Request::Next {}))
            .await
            .unwrap()
            .unwrap()
        {
            Response::Message(m) => m.id,
            other => panic!("{other:?}"),
        };
        conns.push((c, id));
    }

    // OpenAI: the chunks in order, the answer assembled, the cached tokens recorded as reads.
    let (gpts, _) = &mut conns[0];
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    let (chunks, body) = streamed(gpts, &release, hi.clone()).await;
    assert!(chunks[0].contains("Hel"), "{chunks:?}");
    assert!(chunks[1].contains("lo"), "{chunks:?}");
    assert_eq!(chunks.last().unwrap(), "data: [DONE]");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    let calls = store.model_calls_of("gpts").unwrap();
    let (t, _) = calls.last().unwrap();
    assert_eq!((t.input, t.cache_read, t.output), (40, 60, 2), "{calls:?}");

    // A cache marker is no OpenAI-compatible server's business.
    let marked = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]});
    match gpts
        .call(&Request::ModelStream { request: marked })
        .await
        .unwrap()
    {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::NotAllowed);
            assert!(message.contains("cache_control"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The size cap cuts a stream: chunks come, then the error, and the call is recorded.
    let before = store.model_calls_of("gpts").unwrap().len();
    gpts.send(&Request::ModelStream {
        request: json!({"messages": [{"role": "user", "content": "big"}]}),
    })
    .await
    .unwrap();
    let mut passed = 0;
    let message = loop {
        match read(gpts).await {
            Response::ModelChunk { .. } => passed += 1,
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::Model);
                break message;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(message.contains("larger than"), "{message}");
    assert!(passed > 0, "chunks before the cut");
    let calls = store.model_calls_of("gpts").unwrap();
    assert_eq!(calls.len(), before + 1);
    // What was passed on before the cut is charged (models/charge.rs), not recorded at zero:
    // the content of ~90k events at a token per 4 bytes, and the request's size as input.
    let (t, _) = calls.last().unwrap();
    assert!(t.input > 0, "{t:?}");
    assert!(t.output > 10_000, "{t:?}");

    // Anthropic: cache reads and writes recorded from the stream, priced; an allowed marker
    // passes, another type does not.
    let (claudes, _) = &mut conns[1];
    let ok = json!({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}]});
    let (chunks, body) = streamed(claudes, &release, ok).await;
    assert!(chunks[0].starts_with("event: message_start"), "{chunks:?}");
    assert_eq!(body["content"][0]["text"], "Hi");
    let calls = store.model_calls_of("claudes").unwrap();
    let (t, cost) = calls.last().unwrap();
    assert_eq!(
        (t.input, t.cache_read, t.cache_write, t.output),
        (7, 900, 50, 3)
    );
    let want = (7.0 * 3.0 + 900.0 * 0.3 + 50.0 * 3.75 + 3.0 * 15.0) / 1e6;
    assert!((cost.unwrap() - want).abs() < 1e-12, "{cost:?}");
    let other = json!({"system": [{"type": "text", "text": "s",
        "cache_control": {"type": "persistent"}}], "messages": []});
    match claudes
        .call(&Request::Model { request: other })
        .await
        .unwrap()
    {
        Response::Error { code, message } => {
            assert_eq!(code, ErrorCode::NotAllowed);
            assert!(message.contains("ephemeral"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A raw request that names its own model, stream, key and endpoint (as a harness could):
    // the provider gets the config's model and stream, the core's key, and none of the fields
    // outside the allow-list (src/c0re/models.rs).
    let last_received = || received.lock().unwrap().last().cloned().unwrap();
    let keys_of = |body: &Value| {
        let mut k: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let hostile = json!({
        "model": "gpt-4o", "stream": true, "stream_options": {"include_usage": false},
        "n": 3, "user": "mallory", "metadata": {"a": "b"}, "store": true,
        "api_key": "harness-key", "base_url": "http://169.254.169.254/",
        "extra_headers": {"authorization": "Bearer harness-key"},
        "temperature": 0.5, "messages": [{"role": "user", "content": "hi"}]});
    let (gpts, _) = &mut conns[0];
    match gpts
        .call(&Request::Model {
            request: hostile.clone(),
        })
        .await
        .unwrap()
    {
        Response::ModelResponse { body } => {
            assert_eq!(body["choices"][0]["message"]["content"], "plain")
        }
        other => panic!("{other:?}"),
    }
    let (line, key, body) = last_received();
    assert!(line.starts_with("POST /v1/chat/completions "), "{line}");
    assert_eq!(key.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(
        (&body["model"], &body["stream"]),
        (&json!("m"), &json!(false))
    );
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(
        keys_of(&body),
        ["messages", "model", "stream", "temperature"]
    );
    // Streamed: the stream and its usage are the core's to ask for.
    let (_, answer) = streamed(gpts, &release, hostile).await;
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    let (_, key, body) = last_received();
    assert_eq!(key.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(
        (&body["model"], &body["stream"]),
        (&json!("m"), &json!(true))
    );
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        keys_of(&body),
        [
            "messages",
            "model",
            "stream",
            "stream_options",
            "temperature"
        ]
    );
    let hostile = json!({
        "model": "claude-opus", "stream": true, "metadata": {"user_id": "mallory"},
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "service_tier": "priority",
        "mcp_servers": [{"type": "url", "url": "http://169.254.169.254/", "name": "x"}],
        "container": "c1", "api_key": "harness-key",
        "messages": [{"role": "user", "content": "hi"}]});
    let (claudes, _) = &mut conns[1];
    match claudes
        .call(&Request::Model { request: hostile })
        .await
        .unwrap()
    {
        Response::ModelResponse { body } => assert_eq!(body["content"][0]["text"], "plain"),
        other => panic!("{other:?}"),
    }
    let (line, key, body) = last_received();
    assert!(line.starts_with("POST /v1/messages "), "{line}");
    assert_eq!(key.as_deref(), Some(KEY));
    assert_eq!(
        (&body["model"], &body["stream"]),
        (&json!("c"), &json!(false))
    );
    assert_eq!(
        body["max_tokens"], 4096,
        "the core's default: the API requires one"
    );
    assert_eq!(
        keys_of(&body),
        ["max_tokens", "messages", "model", "stream"]
    );
    contract.assert_kept();
    for (c, id) in &mut conns {
        let r = c.call(&Request::Ack { id: *id }).await.unwrap();
        assert_eq!(r, Response::Done);
    }
    assert_eq!(hive.stop_core().code(), Some(0));
}
