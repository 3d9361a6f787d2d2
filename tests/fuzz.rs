//! Bounded fuzzing inside `cargo test`: whatever arrives from outside must never panic the
//! parser that meets it, nor make it allocate without bound.
//!
//! What is fuzzed, each with arbitrary text or bytes, structured input (JSON values of bounded
//! depth and size, TOML built from them, with the real keys mixed in) and mutations of valid
//! input (bytes inserted, deleted or replaced, lines duplicated or dropped, numbers made huge,
//! unicode spliced in):
//! - (a) the socket protocol: `serde_json::from_str::<wire::protocol::Request>`; valid frames
//!   round-trip exactly;
//! - (b) `agent.toml`: `AgentSpec::parse`, also on mutations of the shipped `bots/*/agent.toml`
//!   (which must themselves parse);
//! - (c) `hive.toml`: `toml::from_str::<RawConfig>` then `Config::validate`, also on mutations
//!   of a full sample (which must itself validate);
//! - (d) appservice transactions: the body as JSON, each event as `routing::TimelineEvent`, then
//!   `route`, `control_command`, `approval_signal`, `verdict_of`, `option_of` under every room
//!   role and sender kind, with their documented rules checked as properties;
//! - (e) the command brain's output: `brain::command::parse_output` on arbitrary bytes.
//!
//! "Bounded allocation": a counting allocator records each thread's peak of live bytes while a
//! parser runs; more than [`ALLOC_LIMIT`] for inputs of a few KiB fails the case.
//!
//! Each property runs 512 cases by default (the file takes seconds). More, for a real hunt:
//!   PROPTEST_CASES=100000 cargo test --release --test fuzz
//! A failure prints the shrunk input and saves its seed in `tests/fuzz.proptest-regressions`
//! (commit that file: the case is then replayed first, forever).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use hyperhive::agent_spec::{AgentName, AgentSpec};
use hyperhive::c0re::routing::{self, RoomRole, SenderKind, TimelineEvent};
use hyperhive::config::{Config, RawConfig};
use hyperhive::wire::protocol::Request;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::FileFailurePersistence;
use ruma::OwnedUserId;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Bounded allocation

/// Most live bytes a parser may reach above where it started, per case.
const ALLOC_LIMIT: isize = 64 << 20;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, failing if it took more than [`ALLOC_LIMIT`] bytes at its peak.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get) - start;
    assert!(peak < ALLOC_LIMIT, "{what} allocated {peak} bytes");
    out
}

#[test]
#[should_panic(expected = "allocated")]
fn the_allocation_bound_is_enforced() {
    bounded("a greedy parser", || {
        std::hint::black_box(vec![0u8; 2 * ALLOC_LIMIT as usize]).len()
    });
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        // Failures are saved beside this file (the default looks for a lib.rs and finds none).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Strings the parsers branch on, mixed into generated input (`|`-separated: some hold spaces).
const WORDS: &str = "| |\n|\0|\"|\\|!hive|!hive stop hello|!hivex|✅|✔\u{FE0F}|❌|\
    1\u{FE0F}\u{20E3}|9\u{20E3}|0\u{20E3}|\u{FE0F}|\u{202E}|🐝|m.room.message|m.reaction|\
    m.annotation|m.thread|m.replace|m.room.redaction|m.room.member|@hm1nd:localhost|\
    @operator:localhost|@hive:localhost|@:x|hm1nd|hello|operator|hive|scripted|command|\
    claude-code|anthropic|openai|process|bwrap|external|127.0.0.1:8009|http://127.0.0.1:8008/|\
    ../../etc/passwd";

/// Keys of the formats fuzzed here, so that structured input reaches past "unknown field"
/// (whitespace-separated, like [`HUGE`]).
const KEYS: &str = "op type event_id room_id sender content state_key redacts body msgtype \
    m.relates_to rel_type key m.mentions user_ids org.hyperhive.event origin_server_ts events \
    agent pid to id error reason sha summary name question options ttl_secs request arguments \
    reply send request_apply_commit request_init_config ask_operator display_name description \
    avatar_url allowed_recipients brain kind rules equals prefix contains send_to silent \
    timeout_secs model base_url api_key_file stream history limits calls_per_day usd_per_day \
    mcp_servers env hive homeserver embedded server_name url port appservice listen \
    sender_localpart agent_prefix operators users delivery max_attempts heartbeat_secs runtime \
    approvals managers required min_power_level secrets files prices input output cache_read";

/// Numbers at and past the edges of every integer type a parser might narrow to.
const HUGE: &str = "99999999999999999999999999999999 -9223372036854775809 18446744073709551616 \
    4294967296 65536 -1 1e309 -0 nan inf 0x7fffffffffffffff 1e-400";

fn words() -> Vec<&'static str> {
    WORDS.split('|').collect()
}

fn keys() -> Vec<&'static str> {
    KEYS.split_whitespace().collect()
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        select(words()).prop_map(str::to_owned),
        select(keys()).prop_map(str::to_owned),
        ".{0,24}",
        any::<String>(),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(keys()).prop_map(str::to_owned), 1 => text()]
}

/// Arbitrary JSON, at most 4 deep and ~64 nodes. Floats are quarters: exact in decimal, so
/// values round-trip through text unchanged.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i32>().prop_map(|i| Value::from(f64::from(i) / 4.0)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Replace(Index, Vec<u8>),
    DuplicateLine(Index),
    DeleteLine(Index),
    HugeNumber(Index, &'static str),
    Unicode(Index, char),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        select(words()).prop_map(|w| w.as_bytes().to_vec()),
        select(
            &[
                "[", "]", "[[", "]]", "{", "}", ",", ":", "=", "\"", "'''", "\"\"\"", "#"
            ][..]
        )
        .prop_map(|w| w.as_bytes().to_vec()),
    ];
    let m = prop_oneof![
        (any::<Index>(), bytes.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), bytes).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        any::<Index>().prop_map(Mutation::DeleteLine),
        (
            any::<Index>(),
            select(HUGE.split_whitespace().collect::<Vec<_>>())
        )
            .prop_map(|(i, h)| Mutation::HugeNumber(i, h)),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Mutation::Unicode(i, c)),
    ];
    prop::collection::vec(m, 1..6)
}

/// `input` with `ms` applied in turn (positions are taken modulo the current length).
fn mutate(input: &[u8], ms: &[Mutation]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in ms {
        let at = |i: &Index, len: usize| i.index(len + 1);
        match m {
            Mutation::Insert(i, bytes) => {
                let p = at(i, b.len());
                b.splice(p..p, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let p = at(i, b.len());
                let end = (p + n).min(b.len());
                b.drain(p..end);
            }
            Mutation::Replace(i, bytes) => {
                let p = at(i, b.len());
                let end = (p + bytes.len()).min(b.len());
                b.splice(p..end, bytes.iter().copied());
            }
            Mutation::DuplicateLine(i) | Mutation::DeleteLine(i) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|c| *c == b'\n').map(<[u8]>::to_vec).collect();
                let p = i.index(lines.len());
                if matches!(m, Mutation::DuplicateLine(_)) {
                    lines.insert(p, lines[p].clone());
                } else {
                    lines.remove(p);
                }
                b = lines.join(&b'\n');
            }
            Mutation::HugeNumber(i, huge) => {
                // The first number at or after the position, else the position itself.
                let p = at(i, b.len());
                let start = b[p..]
                    .iter()
                    .position(u8::is_ascii_digit)
                    .map_or(p, |d| p + d);
                let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
                b.splice(start..start + len, huge.bytes());
            }
            Mutation::Unicode(i, c) => {
                let p = at(i, b.len());
                b.splice(p..p, c.to_string().into_bytes());
            }
        }
    }
    b
}

/// JSON turned into TOML where it can be (tables only, no nulls), else the JSON text itself.
fn to_toml(v: &Value) -> String {
    fn strip_nulls(v: &Value) -> Value {
        match v {
            Value::Null => Value::String(String::new()),
            Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
            }
            other => other.clone(),
        }
    }
    toml::to_string(&strip_nulls(v)).unwrap_or_else(|_| v.to_string())
}

// ---------------------------------------------------------------------------------------------
// (a) the socket protocol

fn request() -> impl Strategy<Value = Request> {
    let s = text;
    prop_oneof![
        (s(), any::<u32>()).prop_map(|(agent, pid)| Request::Hello { agent, pid }),
        Just(Request::Next {}),
        Just(Request::ListTools {}),
        s().prop_map(|body| Request::Reply { body }),
        (s(), s()).prop_map(|(to, body)| Request::SendMessage { to, body }),
        any::<i64>().prop_map(|id| Request::Ack { id }),
        (any::<i64>(), s()).prop_map(|(id, error)| Request::Fail { id, error }),
        s().prop_map(|reason| Request::BrainUnavailable { reason }),
        (s(), s(), s()).prop_map(|(agent, sha, summary)| Request::RequestApplyCommit {
            agent,
            sha,
            summary
        }),
        (s(), s()).prop_map(|(name, summary)| Request::RequestInitConfig { name, summary }),
        json().prop_map(|request| Request::Model { request }),
        (s(), json()).prop_map(|(name, arguments)| Request::CallTool { name, arguments }),
        (s(), prop::collection::vec(s(), 0..4), any::<Option<u64>>()).prop_map(
            |(question, options, ttl_secs)| Request::AskOperator {
                question,
                options,
                ttl_secs
            }
        ),
    ]
}

fn parse_request(text: &str) -> Option<Request> {
    bounded("a socket frame", || {
        serde_json::from_str::<Request>(text).ok()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_from_arbitrary_text(s in any::<String>()) {
        parse_request(&s);
    }

    #[test]
    fn frames_from_arbitrary_json(v in json()) {
        parse_request(&v.to_string());
        bounded("a socket frame", || serde_json::from_value::<Request>(v).ok());
    }

    #[test]
    fn valid_frames_round_trip_and_mutants_do_not_panic(r in request(), ms in mutations()) {
        let frame = serde_json::to_string(&r).expect("a request serialises");
        prop_assert_eq!(parse_request(&frame), Some(r));
        let bytes = mutate(frame.as_bytes(), &ms);
        bounded("a socket frame", || serde_json::from_slice::<Request>(&bytes).ok());
        parse_request(&String::from_utf8_lossy(&bytes));
    }
}

// ---------------------------------------------------------------------------------------------
// (b) agent.toml

/// Every shipped bot: (name, dir, agent.toml text), read once.
static BOTS: LazyLock<Vec<(AgentName, PathBuf, String)>> = LazyLock::new(|| {
    let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("bots");
    let mut out: Vec<_> = std::fs::read_dir(&bots)
        .unwrap_or_else(|e| panic!("{}: {e}", bots.display()))
        .map(|entry| {
            let dir = entry.expect("a directory entry").path();
            let name = dir
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(dir.join("agent.toml"))
                .unwrap_or_else(|e| panic!("{}/agent.toml: {e}", dir.display()));
            let name = AgentName::parse(&name).expect("a shipped bot's name is valid");
            (name, dir, text)
        })
        .collect();
    out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    out
});

fn parse_agent(name: &AgentName, dir: &Path, text: &str) {
    let file = dir.join("agent.toml");
    bounded("an agent.toml", || {
        AgentSpec::parse(name.clone(), dir, &file, text).ok()
    });
}

/// Lines that look like TOML: keys, tables, values of every kind.
const TOMLISH: &str =
    "([a-z_.\\[\\]]{1,12} ?= ?(\"[^\"\n]{0,12}\"|[0-9]{1,22}|true|\\[\\]|\\{\\})?\n){0,12}";

/// A table shaped like an agent.toml: known keys, a brain of a known kind, arbitrary values.
fn agent_table() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        select(&["scripted", "command", "claude-code", "anthropic", "openai"][..])
            .prop_map(str::to_owned),
        text(),
    ];
    (
        prop::collection::btree_map(key(), json(), 0..6),
        kind,
        prop::collection::btree_map(key(), json(), 0..6),
    )
        .prop_map(|(top, kind, brain)| {
            let mut brain: serde_json::Map<String, Value> = brain.into_iter().collect();
            brain.insert("kind".into(), Value::String(kind));
            let mut top: serde_json::Map<String, Value> = top.into_iter().collect();
            top.insert("brain".into(), Value::Object(brain));
            Value::Object(top)
        })
}

#[test]
fn shipped_bots_parse() {
    assert!(BOTS.len() >= 2, "bots/ has {} bots", BOTS.len());
    for (name, dir, text) in BOTS.iter() {
        let file = dir.join("agent.toml");
        if let Err(e) = AgentSpec::parse(name.clone(), dir, &file, text) {
            panic!("{name:?}: {e:?}");
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn agent_toml_from_arbitrary_text(s in any::<String>(), tomlish in TOMLISH) {
        let (name, dir, _) = &BOTS[0];
        parse_agent(name, dir, &s);
        parse_agent(name, dir, &tomlish);
    }

    #[test]
    fn agent_toml_from_structured_tables(v in agent_table()) {
        let (name, dir, _) = &BOTS[0];
        parse_agent(name, dir, &to_toml(&v));
    }

    #[test]
    fn agent_toml_mutants_of_the_shipped_bots(i in any::<Index>(), ms in mutations()) {
        let (name, dir, text) = i.get(&BOTS);
        let mutant = mutate(text.as_bytes(), &ms);
        parse_agent(name, dir, &String::from_utf8_lossy(&mutant));
    }
}

// ---------------------------------------------------------------------------------------------
// (c) hive.toml

/// Every key of hive.toml, set to something valid.
const SAMPLE_HIVE_TOML: &str = r#"
[hive]
name = "fuzzhive"

[homeserver]
embedded = true
server_name = "localhost"
url = "http://127.0.0.1:8008/"
port = 8008

[appservice]
id = "hyperhive"
listen = "127.0.0.1:8009"
url = "http://127.0.0.1:8009"
sender_localpart = "hive"
agent_prefix = "bee-"

[operators]
users = ["@operator:localhost", "@second:localhost"]

[delivery]
max_attempts = 3
heartbeat_secs = 60

[runtime]
kind = "process"

[approvals]
managers = ["hm1nd"]
required = 2
min_power_level = 100
ttl_secs = 86400

[secrets]
files = ["/run/secrets/key"]

[prices."claude-sonnet"]
input = 3.0
output = 15.0
cache_read = 0.3
cache_write = 3.75

[federation]
port = 8448
bind = ["0.0.0.0"]
tls_cert = "/etc/hyperhive/tls/fullchain.pem"
tls_key = "/etc/hyperhive/tls/privkey.pem"
ca = "/etc/hyperhive/tls/ca.pem"

[[peers]]
hive = "peerhive"
server_name = "peer.example.org"
agents = [{ local = "argus", remote = ["iris"] }]
"#;

fn validate_hive(text: &str) {
    bounded("a hive.toml", || {
        if let Ok(raw) = toml::from_str::<RawConfig>(text) {
            let _ = Config::validate(raw, None);
        }
    });
}

/// hive.toml's sections with their own keys (and sometimes any key), arbitrary values.
fn hive_table() -> impl Strategy<Value = Value> {
    const SECTIONS: &[(&str, &[&str])] = &[
        ("hive", &["name"]),
        ("homeserver", &["embedded", "server_name", "url", "port"]),
        (
            "appservice",
            &["id", "listen", "url", "sender_localpart", "agent_prefix"],
        ),
        ("operators", &["users"]),
        ("delivery", &["max_attempts", "heartbeat_secs"]),
        ("runtime", &["kind"]),
        (
            "approvals",
            &["managers", "required", "min_power_level", "ttl_secs"],
        ),
        ("secrets", &["files"]),
        ("federation", &["port", "bind", "tls_cert", "tls_key", "ca"]),
    ];
    let section = select(SECTIONS).prop_flat_map(|(name, keys)| {
        let key = prop_oneof![9 => select(keys).prop_map(str::to_owned), 1 => key()];
        (Just(name), prop::collection::btree_map(key, json(), 0..4))
    });
    prop::collection::vec(section, 0..6).prop_map(|sections| {
        json!(
            sections
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        )
    })
}

#[test]
fn the_sample_hive_toml_is_valid() {
    let raw: RawConfig = toml::from_str(SAMPLE_HIVE_TOML).expect("the sample parses");
    if let Err(e) = Config::validate(raw, None) {
        panic!("{e:?}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hive_toml_from_arbitrary_text(s in any::<String>()) {
        validate_hive(&s);
    }

    #[test]
    fn hive_toml_from_structured_tables(v in hive_table()) {
        validate_hive(&to_toml(&v));
    }

    #[test]
    fn hive_toml_mutants_of_the_sample(ms in mutations()) {
        validate_hive(&String::from_utf8_lossy(&mutate(SAMPLE_HIVE_TOML.as_bytes(), &ms)));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) appservice transactions and the routing rules

fn user(name: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:localhost")).expect("a valid user id")
}

const SENDERS: &[&str] = &[
    "@hm1nd:localhost",
    "@hello:localhost",
    "@operator:localhost",
    "@hive:localhost",
    "@x:remote.example",
];

/// A Matrix event with the fields routing reads, each often well-formed and sometimes not.
fn event() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => select(&["m.room.message", "m.reaction", "m.room.redaction", "m.room.member"][..])
            .prop_map(Value::from),
        1 => json(),
    ];
    let sender = prop_oneof![
        4 => select(SENDERS).prop_map(Value::from),
        1 => json(),
    ];
    let body = prop_oneof![
        text(),
        "!hive",
        "[ \t]{0,2}!hive[ \t\n]{0,2}[a-z ]{0,12}",
        "!hive.{0,8}"
    ];
    let rel_type = select(&["m.annotation", "m.thread", "m.replace", "m.reference"][..]);
    let relates = (rel_type, text(), text()).prop_map(
        |(rel_type, event_id, key)| json!({"rel_type": rel_type, "event_id": event_id, "key": key}),
    );
    let content = (
        prop::option::weighted(0.9, body),
        prop::option::of(relates),
        prop::option::of(prop::collection::vec(sender.clone(), 0..3)),
        any::<bool>(),
        prop::collection::btree_map(key(), json(), 0..3),
    )
        .prop_map(|(body, rel, mentions, hive_event, extra)| {
            let mut c: serde_json::Map<String, Value> = extra.into_iter().collect();
            c.extend(body.map(|b| ("body".to_owned(), Value::String(b))));
            c.extend(rel.map(|r| ("m.relates_to".to_owned(), r)));
            c.extend(mentions.map(|m| ("m.mentions".to_owned(), json!({"user_ids": m}))));
            if hive_event {
                c.insert(routing::HIVE_EVENT_KEY.into(), json!("container_crash"));
            }
            Value::Object(c)
        });
    (
        kind,
        text(),
        sender,
        content,
        prop::option::of(text()),
        any::<i64>(),
    )
        .prop_map(|(kind, event_id, sender, content, state_key, ts)| {
            let mut ev = json!({
                "type": kind, "event_id": event_id, "room_id": "!r:localhost",
                "sender": sender, "content": content, "origin_server_ts": ts,
            });
            if let Some(k) = state_key {
                ev["state_key"] = Value::String(k);
            }
            ev
        })
}

/// Checks every routing decision on `ev` against the rules in their doc comments.
fn check_routing(ev: &TimelineEvent, names: &[&str]) -> Result<(), TestCaseError> {
    let agents: Vec<(AgentName, OwnedUserId)> = names
        .iter()
        .map(|n| (AgentName::parse(n).expect("a valid name"), user(n)))
        .collect();
    let hm1nd = AgentName::parse("hm1nd").expect("a valid name");
    let rooms = [
        RoomRole::Inbox(hm1nd.clone()),
        RoomRole::Swarm,
        RoomRole::Control,
        RoomRole::Approvals,
        RoomRole::Space,
        RoomRole::Other,
    ];
    let senders = [
        SenderKind::Bot,
        SenderKind::Agent(hm1nd.clone()),
        SenderKind::Agent(AgentName::parse("hello").expect("a valid name")),
        SenderKind::Operator,
        SenderKind::Other,
    ];
    for room in &rooms {
        for sender in &senders {
            let to = bounded("routing", || routing::route(ev, room, sender, &agents));
            let known = |n: &AgentName| agents.iter().any(|(a, _)| a == n);
            prop_assert!(
                to.iter()
                    .all(|n| known(n) || matches!(room, RoomRole::Inbox(o) if o == n))
            );
            if ev.kind != "m.room.message" || ev.state_key.is_some() {
                prop_assert!(to.is_empty(), "{} routed to {to:?}", ev.kind);
            }
            if matches!(sender, SenderKind::Agent(_) | SenderKind::Bot)
                && !matches!(room, RoomRole::Inbox(_))
            {
                prop_assert!(to.is_empty(), "{sender:?} in {room:?} routed to {to:?}");
            }
            match (room, sender) {
                (RoomRole::Inbox(owner), SenderKind::Agent(a)) if a == owner => {
                    prop_assert!(to.is_empty(), "an agent's own message reached {to:?}");
                }
                (RoomRole::Inbox(_), SenderKind::Bot)
                    if ev.content.get(routing::HIVE_EVENT_KEY).is_none() =>
                {
                    prop_assert!(to.is_empty(), "a plain core message reached {to:?}");
                }
                _ => {}
            }
            if let Some(cmd) = routing::control_command(ev, room, sender) {
                // Queued from anyone but the core itself (a non-operator is answered no), and
                // carried out for an operator only.
                prop_assert!(*room == RoomRole::Control && *sender != SenderKind::Bot);
                prop_assert_eq!(
                    routing::command_right(sender) == Some(routing::CommandRight::Obey),
                    *sender == SenderKind::Operator
                );
                prop_assert_eq!(cmd.trim(), cmd.as_str());
            }
        }
        if routing::approval_signal(ev, room).is_some() {
            prop_assert_eq!(room, &RoomRole::Approvals);
        }
    }
    if let Some(key) = ev
        .content
        .pointer("/m.relates_to/key")
        .and_then(Value::as_str)
    {
        routing::verdict_of(key);
        if let Some(i) = routing::option_of(key) {
            prop_assert!(i < 9);
        }
    }
    Ok(())
}

fn route_body(body: &[u8], names: &[&str]) -> Result<(), TestCaseError> {
    let Ok(v) = bounded("a transaction", || serde_json::from_slice::<Value>(body)) else {
        return Ok(());
    };
    let events = v
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for ev in events {
        if let Ok(ev) = bounded("an event", || serde_json::from_value::<TimelineEvent>(ev)) {
            check_routing(&ev, names)?;
        }
    }
    Ok(())
}

fn events(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(event(), n)
}

fn agent_names() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(select(&["hm1nd", "hello", "iris", "a", "b-c_9"][..]), 0..4)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn transactions_of_structured_events(evs in events(0..4), names in agent_names()) {
        let body = serde_json::to_vec(&json!({"events": evs})).expect("json serialises");
        route_body(&body, &names)?;
    }

    #[test]
    fn transactions_mutated(evs in events(1..3), ms in mutations(), names in agent_names()) {
        let body = serde_json::to_vec(&json!({"events": evs})).expect("json serialises");
        route_body(&mutate(&body, &ms), &names)?;
    }

    #[test]
    fn transactions_of_arbitrary_json(v in json(), evs in prop::collection::vec(json(), 0..4)) {
        route_body(&serde_json::to_vec(&v).expect("json serialises"), &["hm1nd"])?;
        let body = json!({"events": evs});
        route_body(&serde_json::to_vec(&body).expect("json serialises"), &["hm1nd"])?;
    }

    #[test]
    fn reaction_keys(key in text()) {
        routing::verdict_of(&key);
        if let Some(i) = routing::option_of(&key) {
            prop_assert!(i < 9);
        }
    }
}

#[test]
fn keycaps_name_their_option() {
    for i in 0..9 {
        assert_eq!(routing::option_of(&routing::keycap(i)), Some(i));
    }
}

// ---------------------------------------------------------------------------------------------
// (e) the command brain's output

fn output_object() -> impl Strategy<Value = Value> {
    let send = prop::collection::vec(
        (text(), text()).prop_map(|(to, body)| json!({"to": to, "body": body})),
        0..3,
    );
    let ask = prop::collection::vec(
        (text(), prop::collection::vec(text(), 0..3), json())
            .prop_map(|(q, o, t)| json!({"question": q, "options": o, "ttl_secs": t})),
        0..2,
    );
    (
        prop::option::of(text()),
        send,
        ask,
        prop::collection::btree_map(key(), json(), 0..2),
    )
        .prop_map(|(reply, send, ask, extra)| {
            let mut o: serde_json::Map<String, Value> = extra.into_iter().collect();
            o.insert("reply".into(), json!(reply));
            o.insert("send".into(), json!(send));
            o.insert("ask_operator".into(), json!(ask));
            Value::Object(o)
        })
}

fn output_json() -> impl Strategy<Value = Value> {
    prop_oneof![json(), output_object()]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn parse_output(bytes: &[u8]) {
    bounded("a command's output", || {
        hyperhive::brain::command::parse_output(bytes).ok()
    });
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn command_output_from_arbitrary_bytes(b in bytes(512), s in any::<String>()) {
        parse_output(&b);
        parse_output(s.as_bytes());
    }

    #[test]
    fn command_output_structured_and_mutated(v in output_json(), ms in mutations()) {
        let text = serde_json::to_vec(&v).expect("json serialises");
        parse_output(&text);
        parse_output(&mutate(&text, &ms));
    }
}

#[test]
fn a_plain_reply_parses() {
    let out = hyperhive::brain::command::parse_output(br#"{"reply": "hi"}"#).expect("valid");
    assert_eq!(out.reply.as_deref(), Some("hi"));
    let empty = hyperhive::brain::command::parse_output(b"  \n").expect("empty is no action");
    assert_eq!(empty.reply, None);
}
