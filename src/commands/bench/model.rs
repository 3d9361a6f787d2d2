//! The model section of `hive bench`: the model path against a local streaming server
//! ([`model_server`](super::model_server)), direct and through the hive in one run, and the
//! `anthropic` brain's prompt cache.
//!
//! Latency, per brain, calls interleaved (direct, then through the hive) so drift falls on both:
//! - direct: the bench's own HTTP request to the server, as a provider client makes it;
//! - `openai`, `anthropic` through the hive: a harness's `model_stream` over its socket (the
//!   core's HTTP call, each event forwarded as it arrives), and a `model` call (the answer
//!   assembled by the core). The in-harness brains act on the whole answer: their "first
//!   token" is the assembled answer's arrival, reported as such next to the stream's.
//! - `claude-code`: the bench plays the CLI against the harness's loopback proxy (the very
//!   proxy a turn runs), which streams the core's chunks on as they come; direct is the same
//!   CLI-like request to the server.
//!
//! First token: the first event carrying text ([`is_token`]). Each figure is a ratio to the
//! direct baseline of the same run.
//!
//! Cache: a conversation of [`TURNS`] turns with the real `anthropic` brain (run in the
//! bench, as the harness would), each turn a `write_notes` call then the answer, against the
//! server's emulation of Anthropic's documented caching rule. From the calls the core
//! recorded: the share of input tokens billed as cache reads from the conversation's second
//! call on, and the cost per turn at the bench's prices, next to the same tokens billed as
//! plain input (what the requests cost before they carried cache markers).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use matrix_sdk::ruma::RoomAliasId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::console::Hive;
use super::host::login;
use super::model_server::{self, Pace};
use super::{connected, pct};
use crate::brain::{Brain, Streamed, Tools};
use crate::c0re::models::SseSplitter;
use crate::store::Store;
use crate::wire::client::SocketClient;
use crate::wire::protocol::{Request, Response};

/// Text tokens per streamed answer, and their spacing.
pub const PACE: Pace = Pace {
    tokens: 20,
    spacing: Duration::from_millis(2),
};
/// Turns of the cache section's conversation.
pub const TURNS: usize = 4;
/// The bench's prices (dollars per million tokens; Claude Sonnet's list prices).
const PRICES: (f64, f64, f64, f64) = (3.0, 15.0, 0.3, 3.75);
const MODEL: &str = "bench-claude";
const GPT: &str = "bench-gpt";
/// The section's agents: one per brain, and the cache conversation's.
const AGENTS: [(&str, &str); 4] = [
    ("mopenai", "openai"),
    ("manthropic", "anthropic"),
    ("mclaude", "claude-code"),
    ("mcache", "anthropic"),
];

#[derive(Debug, Serialize)]
pub struct ModelReport {
    /// Calls per figure.
    pub calls: usize,
    pub tokens: usize,
    pub spacing_ms: f64,
    pub brains: Vec<BrainFigures>,
    pub cache: CacheFigures,
}

#[derive(Debug, Serialize)]
pub struct BrainFigures {
    pub brain: &'static str,
    pub direct_first_p50_ms: f64,
    pub direct_total_p50_ms: f64,
    /// The first token through the hive (the stream as the socket, or the proxy, carries it).
    pub hive_first_p50_ms: f64,
    pub hive_total_p50_ms: f64,
    pub added_first_p50_ms: f64,
    pub first_ratio: f64,
    pub total_ratio: f64,
    /// In-harness brains: the assembled answer's arrival (their first usable token); NaN for
    /// claude-code, whose CLI reads the stream.
    pub hive_whole_p50_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct CacheFigures {
    pub turns: usize,
    pub calls: usize,
    /// Input tokens (plain, cache reads, cache writes) from the second call on.
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_read_share: f64,
    pub cost_per_turn_usd: f64,
    /// The same tokens, every input token at the input price (no cache markers).
    pub uncached_cost_per_turn_usd: f64,
    pub cost_ratio: f64,
}

/// Whether a server-sent event carries text (the first token).
pub fn is_token(event: &str) -> bool {
    event.contains("\"text_delta\"") || event.contains("\"content\":\"")
}

/// The section's hive.toml: `base` with the server's providers and the bench's prices.
fn config_with(base: &str, server: &str) -> String {
    let (i, o, r, w) = PRICES;
    format!(
        "{base}\n[providers.bench-openai]\nkind = \"openai\"\nbase_url = \"{server}/v1\"\nmodels = [\"{GPT}\"]\n\
         [providers.bench-anthropic]\nkind = \"anthropic\"\nbase_url = \"{server}\"\nmodels = [\"{MODEL}\"]\n\
         [prices.\"{MODEL}\"]\ninput = {i}\noutput = {o}\ncache_read = {r}\ncache_write = {w}\n\
         [prices.\"{GPT}\"]\ninput = {i}\noutput = {o}\n"
    )
}

/// The cache agent's prompt: the shipped manager's (`bots/hm1nd/prompt.md`), a real agent's
/// size. Without one the hive's own tools and system prompt (≈ 850 tokens) are under the
/// provider's 1024-token minimum, and nothing is cached.
const CACHE_PROMPT: &str = include_str!("../../../bots/hm1nd/prompt.md");

/// An agent of the section; the latency agents stream (the core reads the provider's stream
/// and assembles it for `model`, as `stream = true` does).
fn agent_toml(kind: &str) -> String {
    let (model, provider) = match kind {
        "openai" => (GPT, "bench-openai"),
        _ => (MODEL, "bench-anthropic"),
    };
    let stream = if kind == "claude-code" {
        ""
    } else {
        "stream = true\n"
    };
    format!(
        "[brain]\nkind = \"{kind}\"\nmodel = \"{model}\"\nprovider = \"{provider}\"\n{stream}[brain.limits]\ncalls_per_message = 100000\n"
    )
}

pub(super) async fn run(h: &Hive<'_>, calls: usize) -> anyhow::Result<ModelReport> {
    let server = model_server::start(PACE).await?;
    let config = h.dir.join("hive-model.toml");
    std::fs::write(
        &config,
        config_with(&std::fs::read_to_string(h.config)?, &server.base),
    )?;
    for (name, kind) in AGENTS {
        std::fs::create_dir_all(h.bots.join(name))?;
        std::fs::write(h.bots.join(name).join("agent.toml"), agent_toml(kind))?;
    }
    std::fs::write(h.bots.join(AGENTS[3].0).join("prompt.md"), CACHE_PROMPT)?;
    let log = h.dir.join("c0re-model.log");
    let mut core = super::spawn_core(h.exe, &config, h.data, h.bots, &log)?;
    let result = measure(h, &server.base, calls).await;
    crate::proc::stop(&mut core, Duration::from_secs(10)).await;
    // Later sections' hives run without them.
    for (name, _) in AGENTS {
        std::fs::remove_dir_all(h.bots.join(name))?;
    }
    result.with_context(|| format!("see {}", log.display()))
}

async fn measure(h: &Hive<'_>, server: &str, calls: usize) -> anyhow::Result<ModelReport> {
    let pid_file = crate::commands::pid_file(h.data, "c0re");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pid_file.exists() {
        if Instant::now() > deadline {
            bail!("hive-c0re did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = login(h.creds).await?;
    let mut rooms = Vec::new();
    for (name, _) in AGENTS {
        let alias = RoomAliasId::parse(format!("#agent-{name}:{}", h.cfg.server_name))?;
        rooms.push(
            client
                .join_room_by_id_or_alias((&*alias).into(), &[])
                .await?,
        );
    }
    let mut harnesses = Vec::new();
    for (i, (name, _)) in AGENTS.iter().enumerate() {
        let mut c = connected(&socket(h.data, name)?, (*name).to_owned()).await?;
        rooms[i]
            .send(RoomMessageEventContent::text_plain("bench"))
            .await?;
        let msg = match c.call(&Request::Next {}).await? {
            Response::Message(m) => m,
            other => bail!("{name}: unexpected {other:?}"),
        };
        harnesses.push((c, msg));
    }
    // One client for the direct calls, as the core keeps one (no set-up counted per call).
    let http = reqwest::Client::new();
    let mut brains = Vec::new();
    let apis = [
        ("openai", "/v1/chat/completions", GPT),
        ("anthropic", "/v1/messages", MODEL),
    ];
    for (i, (brain, path, model)) in apis.into_iter().enumerate() {
        let c = &mut harnesses[i].0;
        let (mut df, mut dt, mut hf, mut ht, mut hw): (Ms, Ms, Ms, Ms, Ms) = Default::default();
        for _ in 0..calls {
            let url = format!("{server}{path}");
            let (f, t) = direct(&http, &url, &request(brain, Some(model))).await?;
            push(&mut df, &mut dt, f, t);
            let (f, t) = via_socket(c, request(brain, None)).await?;
            push(&mut hf, &mut ht, f, t);
            let t0 = Instant::now();
            match c
                .call(&Request::Model {
                    request: request(brain, None),
                })
                .await?
            {
                Response::ModelResponse { .. } => {}
                other => bail!("{brain}: unexpected {other:?}"),
            }
            hw.push(ms(t0));
        }
        brains.push(figures(brain, df, dt, hf, ht, hw));
    }
    brains.push(claude_code(&mut harnesses[2].0, server, calls).await?);
    for (c, msg) in harnesses.iter_mut().take(3) {
        c.call(&Request::Ack { id: msg.id }).await?;
    }
    let (mut cacher, first) = harnesses.pop().context("the cache agent")?;
    let cache = conversation(h, &mut cacher, first, &rooms[3]).await?;
    Ok(ModelReport {
        calls,
        tokens: PACE.tokens,
        spacing_ms: PACE.spacing.as_secs_f64() * 1000.0,
        brains,
        cache,
    })
}

fn socket(data: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let agent = crate::agent_spec::AgentName::parse(name)?;
    Ok(crate::wire::socket_path(&crate::c0re::Core::socket_dir(
        data, &agent,
    )))
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

type Ms = Vec<f64>;

fn push(first: &mut Ms, total: &mut Ms, f: f64, t: f64) {
    first.push(f);
    total.push(t);
}

fn figures(brain: &'static str, df: Ms, dt: Ms, hf: Ms, ht: Ms, hw: Ms) -> BrainFigures {
    let p = |mut v: Ms| {
        v.sort_by(f64::total_cmp);
        pct(&v, 50)
    };
    let (df, dt, hf, ht, hw) = (p(df), p(dt), p(hf), p(ht), p(hw));
    BrainFigures {
        brain,
        direct_first_p50_ms: df,
        direct_total_p50_ms: dt,
        hive_first_p50_ms: hf,
        hive_total_p50_ms: ht,
        added_first_p50_ms: hf - df,
        first_ratio: hf / df,
        total_ratio: ht / dt,
        hive_whole_p50_ms: hw,
    }
}

/// The latency calls' request: no tools, a short prompt; `model` (and `stream`) only direct,
/// where the bench is the provider's client (through the hive the core sets them).
fn request(brain: &str, model: Option<&str>) -> Value {
    let mut r = json!({"messages": [{"role": "user", "content": "count to twenty"}]});
    if brain != "openai" {
        r["max_tokens"] = json!(64);
    }
    if let Some(m) = model {
        r["model"] = json!(m);
        r["stream"] = json!(true);
        if brain == "openai" {
            r["stream_options"] = json!({"include_usage": true});
        }
    }
    r
}

/// One streamed call straight to the server: (first token, end), in ms.
async fn direct(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut resp = http.post(url).json(body).send().await?;
    let mut split = SseSplitter::default();
    let mut first = None;
    while let Some(chunk) = resp.chunk().await? {
        if first.is_none() && split.push(&chunk).iter().any(|e| is_token(e)) {
            first = Some(ms(t0));
        }
    }
    Ok((first.context("no token in the direct stream")?, ms(t0)))
}

/// One `model_stream` call over a harness's socket: (first token, answer), in ms.
async fn via_socket(c: &mut SocketClient, request: Value) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut tools = Tools::new(c);
    let mut call = tools.model_stream(request).await?;
    let mut first = None;
    loop {
        match call.next().await? {
            Streamed::Chunk(e) if first.is_none() && is_token(&e) => first = Some(ms(t0)),
            Streamed::Chunk(_) => {}
            Streamed::Done(Ok(_)) => break,
            Streamed::Done(Err(e)) => bail!("model_stream: {e}"),
        }
    }
    Ok((first.context("no token through the socket")?, ms(t0)))
}

/// The claude-code path: the bench as the CLI, against the server (direct) and against the
/// harness's proxy serving the turn (through the hive).
async fn claude_code(
    c: &mut SocketClient,
    server: &str,
    calls: usize,
) -> anyhow::Result<BrainFigures> {
    let proxy = crate::brain::claude_code::proxy::Proxy::open().await?;
    let body = json!({"model": MODEL, "stream": true, "max_tokens": 64,
        "messages": [{"role": "user", "content": "count to twenty"}]});
    let addr = |base: &str| base.trim_start_matches("http://").to_owned();
    let (mut df, mut dt, mut hf, mut ht): (Ms, Ms, Ms, Ms) = Default::default();
    let at = addr(&proxy.base_url());
    for _ in 0..calls {
        let (f, t) = as_cli(&addr(server), "none", &body).await?;
        push(&mut df, &mut dt, f, t);
        let mut tools = Tools::new(c);
        let cli = as_cli(&at, proxy.secret(), &body);
        let served = async {
            let stream = proxy.accept().await?;
            proxy.serve(stream, &mut tools).await?;
            anyhow::Ok(())
        };
        let ((f, t), ()) = tokio::try_join!(cli, served)?;
        push(&mut hf, &mut ht, f, t);
    }
    Ok(figures("claude-code", df, dt, hf, ht, vec![f64::NAN]))
}

/// One streamed Messages request as the CLI sends it: (first token, end of the stream), in ms.
async fn as_cli(addr: &str, key: &str, body: &Value) -> anyhow::Result<(f64, f64)> {
    let t0 = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let text = body.to_string();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        text.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(text.as_bytes()).await?;
    let mut split = SseSplitter::default();
    let mut first = None;
    let mut buf = [0u8; 16384];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if first.is_none() && split.push(&buf[..n]).iter().any(|e| is_token(e)) {
            first = Some(ms(t0));
        }
    }
    Ok((first.context("no token reached the CLI")?, ms(t0)))
}

/// The cache section: [`TURNS`] turns of the real `anthropic` brain on agent `mcache`'s
/// socket (its first message already handed over, `first`).
async fn conversation(
    h: &Hive<'_>,
    c: &mut SocketClient,
    first: crate::wire::protocol::Message,
    room: &matrix_sdk::Room,
) -> anyhow::Result<CacheFigures> {
    let (name, _) = AGENTS[3];
    let agent = crate::agent_spec::AgentName::parse(name)?;
    let dir = h.bots.join(name);
    let spec = crate::agent_spec::AgentSpec::parse(
        agent,
        &dir,
        &dir.join("agent.toml"),
        &agent_toml("anthropic"),
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let state = h.dir.join("mcache-state");
    std::fs::create_dir_all(&state)?;
    let mut brain =
        crate::brain::anthropic::Anthropic(crate::brain::model::ModelBrain::new(&spec, &state));
    let mut msg = first;
    for turn in 0..TURNS {
        if turn > 0 {
            room.send(RoomMessageEventContent::text_plain(format!(
                "turn {turn}: note it"
            )))
            .await?;
            msg = match c.call(&Request::Next {}).await? {
                Response::Message(m) => m,
                other => bail!("unexpected {other:?}"),
            };
        }
        brain
            .turn(&msg, &mut Tools::new(c))
            .await
            .map_err(|e| anyhow::anyhow!("turn {turn}: {e}"))?;
        c.call(&Request::Ack { id: msg.id }).await?;
    }
    let store = Store::open(&h.data.join("c0re.db"))?;
    let recorded = store.model_calls_of(name)?;
    cache_figures(&recorded)
}

/// The cache figures from the recorded calls (the first one left out of the share).
fn cache_figures(
    recorded: &[(crate::config::Tokens, Option<f64>)],
) -> anyhow::Result<CacheFigures> {
    if recorded.len() < 2 {
        bail!("the conversation made {} model call(s)", recorded.len());
    }
    let later = &recorded[1..];
    let sum = |f: fn(&crate::config::Tokens) -> u64| later.iter().map(|(t, _)| f(t)).sum::<u64>();
    let (input, read, write) = (
        sum(|t| t.input),
        sum(|t| t.cache_read),
        sum(|t| t.cache_write),
    );
    let (pi, po, _, _) = PRICES;
    let cost: f64 = recorded
        .iter()
        .map(|(_, c)| c.context("a call without a cost"))
        .sum::<anyhow::Result<f64>>()?;
    let uncached: f64 = recorded
        .iter()
        .map(|(t, _)| {
            ((t.input + t.cache_read + t.cache_write) as f64 * pi + t.output as f64 * po) / 1e6
        })
        .sum();
    let per = |x: f64| x / TURNS as f64;
    Ok(CacheFigures {
        turns: TURNS,
        calls: recorded.len(),
        input_tokens: input,
        cache_read_tokens: read,
        cache_write_tokens: write,
        cache_read_share: read as f64 / (input + read + write).max(1) as f64,
        cost_per_turn_usd: per(cost),
        uncached_cost_per_turn_usd: per(uncached),
        cost_ratio: cost / uncached,
    })
}

pub(super) fn print(r: &ModelReport) {
    println!();
    println!(
        "model path ({} calls per figure, {} tokens {:.0} ms apart, local server; ms, p50)",
        r.calls, r.tokens, r.spacing_ms
    );
    println!(
        "  brain         first: direct    hive   added  ratio   total: direct    hive  ratio   whole answer"
    );
    for b in &r.brains {
        println!(
            "  {:<12} {:>14.2} {:>7.2} {:>7.2} {:>6.3} {:>14.2} {:>7.2} {:>6.3} {:>14.2}",
            b.brain,
            b.direct_first_p50_ms,
            b.hive_first_p50_ms,
            b.added_first_p50_ms,
            b.first_ratio,
            b.direct_total_p50_ms,
            b.hive_total_p50_ms,
            b.total_ratio,
            b.hive_whole_p50_ms
        );
    }
    let c = &r.cache;
    println!(
        "  prompt cache (anthropic brain, {} turns, {} calls; emulated documented caching):",
        c.turns, c.calls
    );
    println!(
        "    from the 2nd call: {:.1}% of input tokens billed as cache reads ({} read, {} written, {} plain)",
        c.cache_read_share * 100.0,
        c.cache_read_tokens,
        c.cache_write_tokens,
        c.input_tokens
    );
    println!(
        "    cost per turn ${:.5} with markers, ${:.5} without: ratio {:.3}",
        c.cost_per_turn_usd, c.uncached_cost_per_turn_usd, c.cost_ratio
    );
}
