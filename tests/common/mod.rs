//! Test harness: a real Synapse (provisioned by hyperhive's own code into a cached venv), the
//! real `hive` binary, and a real matrix-sdk client as the operator.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyperhive::config::{Config, SYNAPSE_VERSION};
use hyperhive::homeserver::{self, Layout, OperatorCredentials, Synapse};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::filter::FilterDefinition;
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::events::receipt::SyncReceiptEvent;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::events::typing::SyncTypingEvent;
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, RoomAliasId};
use matrix_sdk::{Client, Room};
use tempfile::TempDir;

pub mod apt;
pub mod as_agent;
pub mod browser;
pub mod federation;
pub mod gitea;
pub mod model_api;
// Not `nix`: that is the crate this module uses.
#[path = "nix.rs"]
pub mod nix_bin;

pub const HIVE: &str = env!("CARGO_BIN_EXE_hive");

/// The system's `PATH`, not the runner's (no `~/.cargo/bin`, no pyenv shims).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `hive`, from a cleared environment: nothing of the runner's (`HYPERHIVE_CLAUDE_CODE` or any
/// `HYPERHIVE_*`, its `PATH`, its `HOME`) changes what a test sees. Only `PATH` (the system's),
/// `HOME` (`home`), `LANG` and `RUST_BACKTRACE`; callers add what the run needs.
pub fn hive_command(home: &Path) -> Command {
    let mut cmd = Command::new(HIVE);
    cmd.env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("RUST_BACKTRACE", "1");
    cmd
}

/// The shared Synapse venv: `HYPERHIVE_SYNAPSE_VENV`, else `~/.cache/hyperhive/synapse-<v>`.
pub fn venv() -> PathBuf {
    std::env::var_os("HYPERHIVE_SYNAPSE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache
                .join("hyperhive")
                .join(format!("synapse-{SYNAPSE_VERSION}"))
        })
}

/// A loopback TCP port nothing listens on, for a listener a child process opens later.
///
/// Below the kernel's ephemeral range (32768–60999 by default): a port the kernel hands out
/// (bind to port 0) is also one it may hand to any outgoing connection as its source port
/// between this check and the bind that needs it (a CI run failed that way: "Address already
/// in use" for the core's listener). Never the same port twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = rand::random_range(20_000..32_000);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000–31999 after 1000 tries")
}

pub fn write_bot(bots: &Path, name: &str, toml: &str) {
    let dir = bots.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.toml"), toml).unwrap();
}

/// A stdio MCP server for an agent to declare, with four tools: `shout` (uppercases `text`),
/// `env` (the names in its environment), `pid` (its process id) and `die` (exits mid-call).
/// With `MODE=linger` it does not exit when its stdin closes (a server that ignores EOF).
pub const SHOUT_PY: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
for line in sys.stdin:
    msg = json.loads(line)
    mid, method = msg.get("id"), msg.get("method")
    if mid is None:
        continue
    if method == "initialize":
        res = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
               "serverInfo": {"name": "shout", "version": "1"}}
    elif method == "tools/list":
        obj = {"type": "object", "properties": {}}
        res = {"tools": [
            {"name": "shout", "description": "Uppercases text.", "inputSchema":
             {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
            {"name": "env", "description": "Names in the environment.", "inputSchema": obj},
            {"name": "pid", "description": "The process id.", "inputSchema": obj},
            {"name": "die", "description": "Exits.", "inputSchema": obj}]}
    elif method == "tools/call":
        name, args = msg["params"]["name"], msg["params"].get("arguments") or {}
        if name == "die":
            os._exit(3)
        if name == "shout":
            text = args["text"].upper()
        elif name == "pid":
            text = str(os.getpid())
        else:
            text = " ".join(sorted(os.environ))
        res = {"content": [{"type": "text", "text": text}], "isError": False}
    else:
        res = {}
    print(json.dumps({"jsonrpc": "2.0", "id": mid, "result": res}), flush=True)
if os.environ.get("MODE") == "linger":
    time.sleep(3600)
"#;

/// Serves `app` on a loopback port (a fake model server); returns its `http://` base URL.
pub async fn serve_http(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A secret (an API key, a token) in a file of its own; the file lives as long as the `TempDir`.
pub fn secret_file(name: &str, contents: &str) -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

/// Writes an executable script into a bot's directory.
pub fn write_script(bot_dir: &Path, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = bot_dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A scripted echo bot that may message `allowed`.
pub fn echo_bot(allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "allowed_recipients = [{}]\n[brain]\nkind = \"scripted\"\n\
         [[brain.rules]]\nequals = \"ping\"\nreply = \"pong\"\n\
         [[brain.rules]]\nprefix = \"relay \"\nsend_to = \"{{rest}}\"\nsend = \"hello from {{agent}}\"\nreply = \"relayed\"\n\
         [[brain.rules]]\nreply = \"{{agent}} heard: {{body}}\"\n",
        allowed.join(", ")
    )
}

pub struct TestHive {
    pub dir: TempDir,
    pub config: PathBuf,
    pub data: PathBuf,
    pub bots: PathBuf,
    pub cfg: Config,
    pub synapse: Option<Synapse>,
    pub core: Option<Child>,
    pub operator: OperatorCredentials,
    layout: Layout,
    synapse_configs: Vec<PathBuf>,
}

impl TestHive {
    /// Provisions Synapse and the operator; `bots` are (name, agent.toml) pairs.
    pub async fn new(bots: &[(&str, String)]) -> Self {
        Self::with_config(bots, "").await
    }

    /// Like `new`, with more `hive.toml` appended (whole sections, e.g. `[runtime]`).
    pub async fn with_config(bots: &[(&str, String)], extra: &str) -> Self {
        Self::provision(bots, "", extra, homeserver::TEST_OVERRIDES).await
    }

    /// Provisions a hive: `homeserver_lines` go into hive.toml's `[homeserver]` section, `extra`
    /// (whole sections) after the rest; `synapse_extra` is the homeserver's overrides file.
    pub async fn provision(
        bots: &[(&str, String)],
        homeserver_lines: &str,
        extra: &str,
        synapse_extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let bots_dir = dir.path().join("bots");
        std::fs::create_dir_all(&bots_dir).unwrap();
        for (name, toml) in bots {
            write_bot(&bots_dir, name, toml);
        }
        let hs_port = free_port();
        let as_port = free_port();
        let config = dir.path().join("hive.toml");
        // The web console on a port of its own (tests run in parallel), unless the test sets it.
        let web = if extra.contains("[web]") {
            ""
        } else {
            "[web]\nlisten = \"127.0.0.1:0\"\n"
        };
        std::fs::write(
            &config,
            format!(
                "[homeserver]\nport = {hs_port}\n{homeserver_lines}[appservice]\nlisten = \"127.0.0.1:{as_port}\"\n[delivery]\nheartbeat_secs = 5\n{web}{extra}"
            ),
        )
        .unwrap();
        let cfg = Config::load(Some(&config)).unwrap();
        let registration = hyperhive::commands::c0re::prepare_data_dir(&cfg, &data).unwrap();
        let layout = Layout::with_venv(&data, venv());
        homeserver::ensure_installed(&layout).await.unwrap();
        let configs =
            homeserver::render_config(&layout, &cfg, &registration, Some(synapse_extra)).unwrap();
        let synapse = Synapse::start(&layout, &configs, &cfg.homeserver_url)
            .await
            .unwrap();
        let operator = homeserver::ensure_operator(&data, &layout, &cfg)
            .await
            .unwrap();
        Self {
            dir,
            config,
            data,
            bots: bots_dir,
            cfg,
            synapse: Some(synapse),
            core: None,
            operator,
            layout,
            synapse_configs: configs,
        }
    }

    /// Registers another local user (e.g. a second operator) and returns how to log in.
    pub async fn register_user(&self, localpart: &str) -> OperatorCredentials {
        let password = format!("pw-{localpart}-0123456789");
        homeserver::register_user(
            &self.cfg.homeserver_url,
            &self.layout.shared_secret().unwrap(),
            localpart,
            &password,
            false,
        )
        .await
        .unwrap();
        OperatorCredentials {
            homeserver: self.cfg.homeserver_url.to_string(),
            user_id: format!("@{localpart}:{}", self.cfg.server_name),
            password,
        }
    }

    /// Kills Synapse with SIGKILL (a crash, not a clean stop) and starts it again on the same
    /// database and port.
    pub async fn crash_and_restart_synapse(&mut self) {
        let mut old = self.synapse.take().expect("synapse running");
        let pid = old.pid().expect("synapse has a pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        old.wait().await.unwrap();
        self.start_synapse().await;
    }

    /// Stops Synapse cleanly (a homeserver that is away, not crashed).
    pub async fn stop_synapse(&mut self) {
        self.synapse.take().expect("synapse running").stop().await;
    }

    /// Starts Synapse again on the same database and port.
    pub async fn start_synapse(&mut self) {
        assert!(self.synapse.is_none(), "synapse is running");
        self.synapse = Some(
            Synapse::start(
                &self.layout,
                &self.synapse_configs,
                &self.cfg.homeserver_url,
            )
            .await
            .unwrap(),
        );
    }

    pub fn hive(&self, args: &[&str]) -> Command {
        let mut cmd = hive_command(self.dir.path());
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--bots")
            .arg(&self.bots)
            .env("RUST_LOG", "hyperhive=debug");
        cmd
    }

    /// Starts `hive c0re` and waits until it is ready (its pid file appears).
    pub fn start_core(&mut self) {
        self.start_core_env(&[]);
    }

    /// Waits for `hive c0re` to exit on its own (a failpoint, a crash).
    pub fn wait_core_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.core.take().expect("core running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "hive c0re did not exit\n{}",
                logs_tail(self.dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `start_core` with extra environment variables.
    pub fn start_core_env(&mut self, env: &[(&str, &str)]) {
        let pid_file = self.data.join("run").join("c0re.pid");
        let _ = std::fs::remove_file(&pid_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("c0re.log"))
            .unwrap();
        let child = self
            .hive(&["c0re"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.core = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pid_file.exists() {
            if let Some(status) = self.core.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "hive c0re exited during start ({status}):\n{}",
                    self.core_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hive c0re not ready in 60 s:\n{}",
                self.core_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn core_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("c0re.log")).unwrap_or_default()
    }

    pub fn kill_core(&mut self) {
        let mut c = self.core.take().expect("core running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop_core(&mut self) -> std::process::ExitStatus {
        let mut c = self.core.take().expect("core running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "hive c0re did not stop within 30 s\n{}",
                logs_tail(self.dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The operator, logged in; a wait of theirs that times out prints this hive's logs.
    pub async fn operator(&self) -> Operator {
        Operator::login(&self.operator).await.with_logs(self)
    }

    pub fn hs_token(&self) -> String {
        hyperhive::c0re::registration::Tokens::load(&self.data)
            .unwrap()
            .hs_token
    }
}

impl Drop for TestHive {
    fn drop(&mut self) {
        if let Some(mut c) = self.core.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failed test keeps its directory (every log, the databases) and says where it is,
        // with the tails of the logs: the evidence outlives the test.
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "the test failed; the last of its logs:\n{}",
                logs_tail(self.dir.path())
            );
        }
        if failed || std::env::var_os("HYPERHIVE_KEEP_TEST_DIR").is_some() {
            eprintln!("test dir kept: {}", self.dir.path().display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().unwrap(),
            ));
        }
    }
}

/// A message the operator's client saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub room: OwnedRoomId,
    pub sender: String,
    pub body: String,
    pub event_id: OwnedEventId,
    pub formatted: Option<String>,
    pub mentions: Vec<String>,
    /// The root of the thread it is in (`m.relates_to` `rel_type: m.thread`), if any.
    pub thread: Option<OwnedEventId>,
    /// The message this one edits (`m.relates_to` `rel_type: m.replace`), if it is an edit:
    /// the console's status message is edited in place, and a test waiting for an answer
    /// must not take an edit of it for one.
    pub edit_of: Option<OwnedEventId>,
}

/// Ephemeral events the operator's client saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ephemeral {
    /// Who is typing in the room now.
    Typing(OwnedRoomId, Vec<String>),
    /// `user` has read up to `event`.
    Read(OwnedRoomId, String, OwnedEventId),
}

pub struct Operator {
    pub client: Client,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub ephemeral: Arc<Mutex<Vec<Ephemeral>>>,
    sync: tokio::task::JoinHandle<()>,
    /// Why the operator's sync loop stopped, once it has: every wait after that would only
    /// time out, so a wait fails at once with this reason instead.
    sync_dead: Arc<Mutex<Option<String>>>,
    /// The last error the sync retried after (a homeserver away), said by a wait that times out.
    sync_error: Arc<Mutex<Option<String>>>,
    /// The test dir whose logs a timed-out wait prints (see [`logs_tail`]).
    logs: Option<PathBuf>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.sync.abort();
    }
}

impl Operator {
    pub async fn login(creds: &OperatorCredentials) -> Self {
        let client = Client::builder()
            .homeserver_url(&creds.homeserver)
            .build()
            .await
            .unwrap();
        let localpart = creds
            .user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap();
        client
            .matrix_auth()
            .login_username(localpart, &creds.password)
            .send()
            .await
            .unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
            let s = s.clone();
            async move {
                let formatted = match &ev.content.msgtype {
                    matrix_sdk::ruma::events::room::message::MessageType::Text(t) => {
                        t.formatted.as_ref().map(|f| f.body.clone())
                    }
                    matrix_sdk::ruma::events::room::message::MessageType::Notice(t) => {
                        t.formatted.as_ref().map(|f| f.body.clone())
                    }
                    _ => None,
                };
                let mentions = ev
                    .content
                    .mentions
                    .as_ref()
                    .map(|m| m.user_ids.iter().map(|u| u.to_string()).collect())
                    .unwrap_or_default();
                use matrix_sdk::ruma::events::room::message::Relation;
                let (thread, edit_of) = match &ev.content.relates_to {
                    Some(Relation::Thread(t)) => (Some(t.event_id.clone()), None),
                    Some(Relation::Replacement(r)) => (None, Some(r.event_id.clone())),
                    _ => (None, None),
                };
                s.lock().unwrap().push(Seen {
                    room: room.room_id().to_owned(),
                    sender: ev.sender.to_string(),
                    body: ev.content.body().to_owned(),
                    event_id: ev.event_id.clone(),
                    formatted,
                    mentions,
                    thread,
                    edit_of,
                });
            }
        });
        let ephemeral: Arc<Mutex<Vec<Ephemeral>>> = Arc::default();
        let e = ephemeral.clone();
        client.add_event_handler(move |ev: SyncTypingEvent, room: Room| {
            let e = e.clone();
            async move {
                let users = ev.content.user_ids.iter().map(|u| u.to_string()).collect();
                e.lock()
                    .unwrap()
                    .push(Ephemeral::Typing(room.room_id().to_owned(), users));
            }
        });
        let e = ephemeral.clone();
        client.add_event_handler(move |ev: SyncReceiptEvent, room: Room| {
            let e = e.clone();
            async move {
                let mut e = e.lock().unwrap();
                for (event, receipts) in ev.content.iter() {
                    for users in receipts.values() {
                        for user in users.keys() {
                            e.push(Ephemeral::Read(
                                room.room_id().to_owned(),
                                user.to_string(),
                                event.clone(),
                            ));
                        }
                    }
                }
            }
        });
        // A timeline limit large enough that no sync response is "limited": the handler must see
        // every message, not just the last ten of a burst.
        let mut filter = FilterDefinition::default();
        filter.room.timeline.limit = Some(10_000u32.into());
        let settings = SyncSettings::default()
            .filter(Filter::FilterDefinition(filter))
            .timeout(Duration::from_secs(5));
        client.sync_once(settings.clone()).await.unwrap();
        let c = client.clone();
        let sync_dead: Arc<Mutex<Option<String>>> = Arc::default();
        let dead = sync_dead.clone();
        let sync_error: Arc<Mutex<Option<String>>> = Arc::default();
        let last_error = sync_error.clone();
        let sync = tokio::spawn(async move {
            let last = &last_error;
            // Like a real client: a homeserver that is away (connection refused, a 5xx while it
            // restarts) is retried; a refusal (an unknown token, forbidden) ends the sync, and
            // the next wait says so rather than timing out.
            let ended = c
                .sync_with_result_callback(settings, |r| async move {
                    match r {
                        Ok(_) => {
                            *last.lock().unwrap() = None;
                            Ok(matrix_sdk::LoopCtrl::Continue)
                        }
                        Err(e) if sync_refused(&e) => Err(e),
                        Err(e) => {
                            *last.lock().unwrap() = Some(e.to_string());
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            Ok(matrix_sdk::LoopCtrl::Continue)
                        }
                    }
                })
                .await;
            *dead.lock().unwrap() = Some(match ended {
                Ok(()) => "the sync loop ended".to_owned(),
                Err(e) => format!("the homeserver refused it: {e}"),
            });
        });
        Self {
            client,
            seen,
            ephemeral,
            sync,
            sync_dead,
            sync_error,
            logs: None,
        }
    }

    /// A timed-out wait of this operator's prints the tail of `hive`'s core and agent logs.
    pub fn with_logs(mut self, hive: &TestHive) -> Self {
        self.logs = Some(hive.dir.path().to_owned());
        self
    }

    fn logs(&self) -> String {
        let retried = self
            .sync_error
            .lock()
            .unwrap()
            .as_ref()
            .map(|e| format!("--- the operator's sync last retried after: {e} ---\n"))
            .unwrap_or_default();
        retried
            + self
                .logs
                .as_deref()
                .map(logs_tail)
                .unwrap_or_default()
                .as_str()
    }

    /// Panics, with the hive's logs, if the operator's sync has stopped: nothing new can be
    /// seen after that, and a wait would only time out without saying why.
    fn assert_syncing(&self, what: &str) {
        let dead = self.sync_dead.lock().unwrap().clone();
        if let Some(why) = dead {
            panic!(
                "waiting for {what}: the operator's sync died ({why})\n{}",
                self.logs()
            );
        }
        if self.sync.is_finished() {
            panic!(
                "waiting for {what}: the operator's sync task ended (it panicked?)\n{}",
                self.logs()
            );
        }
    }

    /// Joins the room behind `#alias:<server>` (the operator is invited to every hive room).
    pub async fn join(&self, alias: &str) -> Room {
        let server = self.client.user_id().unwrap().server_name().to_owned();
        let alias = RoomAliasId::parse(format!("#{alias}:{server}")).unwrap();
        self.client
            .join_room_by_id_or_alias((&*alias).into(), &[])
            .await
            .unwrap()
    }

    pub async fn send(&self, room: &Room, text: &str) -> OwnedEventId {
        room.send(RoomMessageEventContent::text_plain(text))
            .await
            .unwrap()
            .response
            .event_id
    }

    /// Waits until `pred` holds for the messages seen in `room`, returning them.
    pub async fn wait_until(
        &self,
        room: &Room,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Seen]) -> bool,
    ) -> Vec<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs: Vec<Seen> = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.room == room.room_id())
                .cloned()
                .collect();
            if pred(&msgs) {
                return msgs;
            }
            self.assert_syncing(what);
            if Instant::now() > deadline {
                let bodies: Vec<String> = msgs
                    .iter()
                    .map(|m| format!("{}: {}", m.sender, m.body))
                    .collect();
                panic!(
                    "timed out waiting for {what}; room has:\n{}\n{}",
                    bodies.join("\n"),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `pred` holds for the ephemeral events seen so far.
    pub async fn wait_ephemeral(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Ephemeral]) -> bool,
    ) -> Vec<Ephemeral> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.ephemeral.lock().unwrap().clone();
            if pred(&seen) {
                return seen;
            }
            self.assert_syncing(what);
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; saw:\n{seen:#?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages in `room` whose body is exactly `body` (a count after a dead sync would be
    /// a count of nothing: it fails instead).
    pub fn count(&self, room: &Room, body: &str) -> usize {
        self.assert_syncing(&format!("a count of {body:?}"));
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.room == room.room_id() && m.body == body)
            .count()
    }
}

/// The operator reacts `key` to `event` in `room`; returns the reaction's event id.
pub async fn react(room: &Room, event: &OwnedEventId, key: &str) -> OwnedEventId {
    use matrix_sdk::ruma::events::reaction::ReactionEventContent;
    use matrix_sdk::ruma::events::relation::Annotation;
    room.send(ReactionEventContent::new(Annotation::new(
        event.clone(),
        key.to_owned(),
    )))
    .await
    .unwrap()
    .response
    .event_id
}

/// Request `#id`'s message in the approvals room, once it is there.
pub async fn request_message(op: &Operator, approvals: &Room, id: u32, timeout: Duration) -> Seen {
    let head = format!("Request #{id}: ");
    let msgs = op
        .wait_until(approvals, timeout, &format!("request #{id}"), |m| {
            m.iter().any(|x| x.body.starts_with(&head))
        })
        .await;
    msgs.into_iter()
        .find(|x| x.body.starts_with(&head))
        .unwrap()
}

/// A connection to agent `name`'s socket `file` (`c0re.sock`, `tools.sock`) that said hello,
/// waiting until the socket is there.
pub async fn hello_socket(
    hive: &TestHive,
    name: &str,
    file: &str,
    timeout: Duration,
) -> hyperhive::wire::client::SocketClient {
    use hyperhive::wire::client::SocketClient;
    use hyperhive::wire::protocol::{Request, Response};
    let path = hive.data.join("agents").join(name).join("sock").join(file);
    let deadline = Instant::now() + timeout;
    let mut c = loop {
        match SocketClient::connect(&path).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e:#}\n{}", logs_tail(hive.dir.path())),
        }
    };
    let r = c
        .call(&Request::Hello {
            agent: name.into(),
            pid: 1,
        })
        .await
        .unwrap();
    assert!(matches!(r, Response::Welcome { .. }), "{r:?}");
    c
}

/// Whether a sync error is the homeserver refusing this client (a Matrix error with a 4xx
/// status: an unknown or missing token, forbidden), after which retrying cannot help; anything
/// else (no connection, a 5xx, a timeout) is a homeserver that is away for now.
fn sync_refused(e: &matrix_sdk::Error) -> bool {
    e.as_client_api_error()
        .is_some_and(|e| e.status_code.is_client_error() && e.status_code.as_u16() != 429)
}

/// The last lines of the core's log (`<test dir>/c0re.log`) and of every agent's
/// (`<test dir>/data/agents/<name>/agent.log`), for a wait that timed out: what the hive was
/// doing is the first thing the reader of a failure needs.
pub fn logs_tail(dir: &Path) -> String {
    // The same reader `get_logs` and crash reports use: the end of the file only.
    fn tail(path: &Path, lines: usize) -> Option<String> {
        hyperhive::runtime::log::tail(path, lines, 1 << 20).ok()
    }
    let mut out = String::new();
    if let Some(t) = tail(&dir.join("c0re.log"), 60) {
        out.push_str(&format!("--- the last of c0re.log ---\n{t}\n"));
    }
    let mut agents: Vec<PathBuf> = std::fs::read_dir(dir.join("data").join("agents"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("agent.log"))
        .collect();
    agents.sort();
    for log in agents {
        if let Some(t) = tail(&log, 20) {
            out.push_str(&format!("--- the last of {} ---\n{t}\n", log.display()));
        }
    }
    let synapse = dir.join("data").join("synapse").join("homeserver.log");
    if let Some(t) = tail(&synapse, 30) {
        out.push_str(&format!("--- the last of {} ---\n{t}\n", synapse.display()));
    }
    out
}

/// Calls tool `name` on a connection that said hello; (result text, whether it is an error).
pub async fn call_tool(
    c: &mut hyperhive::wire::client::SocketClient,
    name: &str,
    arguments: serde_json::Value,
) -> (String, bool) {
    use hyperhive::wire::protocol::{Request, Response};
    match c
        .call(&Request::CallTool {
            name: name.into(),
            arguments,
        })
        .await
        .unwrap()
    {
        Response::ToolResult { content, is_error } => (content, is_error),
        other => panic!("unexpected {other:?}"),
    }
}

/// A scripted agent that answers every message `<version>: <body>`, as a config names it.
pub fn scripted(version: &str) -> String {
    format!("[brain]\nkind = \"scripted\"\n[[brain.rules]]\nreply = \"{version}: {{body}}\"\n")
}

/// The pinned CLI, installed from npm into the shared cache on first use by `hive up`'s own
/// installer. No npm is a failure: set `HYPERHIVE_SKIP_CLAUDE_CODE=1` to skip instead.
pub fn claude_code_cli() -> Option<PathBuf> {
    let cache = venv().parent().unwrap().to_owned();
    let installed = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(hyperhive::install::ensure_claude_code(&cache))
    })
    .unwrap_or_else(|e| panic!("cannot install the Claude Code CLI: {e:#}"));
    if installed.is_none() {
        assert_eq!(
            std::env::var("HYPERHIVE_SKIP_CLAUDE_CODE").as_deref(),
            Ok("1"),
            "npm is not on PATH, so the Claude Code CLI cannot be installed; install Node.js/npm \
             (or set HYPERHIVE_SKIP_CLAUDE_CODE=1 to skip these tests)"
        );
        eprintln!("SKIPPED: npm is unavailable and HYPERHIVE_SKIP_CLAUDE_CODE=1");
    }
    installed
}

/// An HTTP client that follows no redirect and keeps no cookie (the console's login answers
/// `303` with its cookie, which a test reads itself).
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts a console login link's token to `/login` of the link's origin, as the link's page's
/// "log in" button does.
pub async fn post_login(http: &reqwest::Client, link: &str) -> reqwest::Response {
    let url = url::Url::parse(link).unwrap_or_else(|e| panic!("{link:?} is no URL: {e}"));
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("a token in the link");
    http.post(url.join("/login").expect("a path joins"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &token)
                .finish(),
        )
        .send()
        .await
        .unwrap()
}
