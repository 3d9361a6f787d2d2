//! Agents attacked from inside, in every runtime that runs code of an agent's own: a command
//! brain (`jail`) tries to read the hive's secrets (the operator's password, the appservice
//! tokens, the databases, Synapse's signing key and shared secret), another agent's state dir,
//! log and sockets, to write outside its state dir, and to signal or trace the core. Every
//! attempt fails, in the bwrap sandbox and as a uid of its own in the `process` runtime; its own
//! state dir works. Without `runtime.allow_unsandboxed`, the process runtime refuses such an
//! agent (and says why) while a scripted agent runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::TestHive;
use serde_json::Value;

/// The attacker: runs once, on a message whose body is the JSON of its targets, and replies with
/// a JSON report naming each attempt `"ok"` (it got through) or the exception that stopped it.
const PROBE: &str = r#"#!/usr/bin/env python3
import ctypes, json, os, socket, sys
req = json.load(sys.stdin)
t = json.loads(req["message"]["body"])
res = {}
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except Exception as e:
        res[name] = type(e).__name__
def write(path):
    with open(path, "w") as f:
        f.write("x")
def read(path):
    with open(path, "rb") as f:
        f.read()
def hello(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b'{"op":"hello","agent":"neighbour","pid":1}\n')
    res[os.path.basename(path) + "_answer"] = s.recv(4096).decode(errors="replace")
def ptrace_seize(pid):
    # PTRACE_SEIZE: attaches without stopping the tracee; the tracer's exit detaches it.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(ctypes.c_long(0x4206), ctypes.c_int(pid), None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def ls(name, path):
    res[name + "_entries"] = sorted(os.listdir(path))
def read_pid_file():
    with open(t["pid_file"]) as f:
        res["core_pid_file_contents"] = f.read().strip()
config = os.path.dirname(os.path.abspath(sys.argv[0]))
data, nb = t["data"], t["neighbour"]
attempt("write_state", lambda: write(os.path.join(os.environ["HOME"], "note")))
attempt("write_data_dir", lambda: write(os.path.join(data, "pwned")))
attempt("write_agent_dir", lambda: write(t["agent_dir_file"]))
attempt("write_config", lambda: write(os.path.join(config, "agent.toml")))
attempt("write_config_new", lambda: write(os.path.join(config, "pwned")))
attempt("write_socket_dir", lambda: write(t["sock_file"]))
for name, path in t["host_files"].items():
    attempt(name, lambda path=path: write(path))
for name, path in t["secrets"].items():
    attempt("read_" + name, lambda path=path: read(path))
attempt("list_data_dir", lambda: ls("list_data_dir", data))
attempt("list_agents_dir", lambda: ls("list_agents_dir", os.path.join(data, "agents")))
attempt("list_neighbour_state", lambda: os.listdir(os.path.join(nb, "state")))
attempt("read_neighbour_secret", lambda: read(os.path.join(nb, "state", "secret.txt")))
attempt("read_neighbour_log", lambda: read(os.path.join(nb, "agent.log")))
attempt("hello_neighbour_c0re_sock", lambda: hello(os.path.join(nb, "sock", "c0re.sock")))
attempt("hello_neighbour_tools_sock", lambda: hello(os.path.join(nb, "sock", "tools.sock")))
attempt("read_core_pid_file", read_pid_file)
attempt("signal_core", lambda: os.kill(t["core_pid"], 0))
attempt("ptrace_core", lambda: ptrace_seize(t["core_pid"]))
attempt("read_core_environ", lambda: read("/proc/%d/environ" % t["core_pid"]))
attempt("read_shadow", lambda: read("/etc/shadow"))
attempt("list_root_home", lambda: os.listdir("/root"))
attempt("net_homeserver", lambda: socket.create_connection(("127.0.0.1", t["port"]), 2))
attempt("net_outside", lambda: socket.create_connection(("1.1.1.1", 53), 2))
res["uid"] = os.getuid()
res["uid_map"] = open("/proc/self/uid_map").read().split()
res["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
res["env"] = sorted(os.environ)
print(json.dumps({"reply": json.dumps(res, sort_keys=True)}))
"#;

/// The neighbour: writes `secret.txt` into its own state dir and says who it runs as.
const NEIGHBOUR: &str = r#"#!/usr/bin/env python3
import json, os, sys
json.load(sys.stdin)
path = os.path.join(os.environ["HOME"], "secret.txt")
with open(path, "w") as f:
    f.write("the neighbour's secret")
print(json.dumps({"reply": json.dumps({"uid": os.getuid(), "wrote": path})}))
"#;

const COMMAND_BRAIN: &str = "[brain]\nkind = \"command\"\ncommand = [\"./probe.py\"]\n";

/// Attempts that fail in every runtime (the probe's report names them).
const ALWAYS_FAIL: &[&str] = &[
    "write_config",
    "write_config_new",
    "write_socket_dir",
    "write_usr",
    "write_root",
    "write_var",
    "write_tmp_escape",
    "read_operator",
    "read_tokens",
    "read_registration",
    "read_core_db",
    "read_core_db_wal",
    "read_core_db_shm",
    "read_homeserver_db",
    "read_signing_key",
    "read_shared_secret",
    "read_host_secret",
    "list_neighbour_state",
    "read_neighbour_secret",
    "read_neighbour_log",
    "hello_neighbour_c0re_sock",
    "hello_neighbour_tools_sock",
    "signal_core",
    "ptrace_core",
    "read_core_environ",
    "read_shadow",
    "list_root_home",
];

/// What one attack found: the probe's report and the neighbour's.
struct Findings {
    jail: Value,
    neighbour: Value,
}

/// Runs the probe as agent `jail` beside agent `neighbour` in a hive with `runtime_toml`;
/// `chmod_dir` makes the test's temp dir enterable by other uids first (agents on uids of their
/// own need every directory above the data dir enterable). Checks what holds in every runtime
/// and what reached the host; returns the reports for the runtime's own checks.
async fn attack(runtime_toml: &str, chmod_dir: bool) -> Findings {
    let mut hive = TestHive::with_config(
        &[
            ("jail", COMMAND_BRAIN.to_owned()),
            ("neighbour", COMMAND_BRAIN.to_owned()),
        ],
        runtime_toml,
    )
    .await;
    common::write_script(&hive.bots.join("jail"), "probe.py", PROBE);
    common::write_script(&hive.bots.join("neighbour"), "probe.py", NEIGHBOUR);
    let secret = hive.dir.path().join("host-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    if chmod_dir {
        enterable_by_others(hive.dir.path());
    }
    hive.start_core();
    let op = hive.operator().await;

    let neighbour_room = op.join("agent-neighbour").await;
    op.send(&neighbour_room, "write your secret").await;
    let neighbour = reply_of(&op, &neighbour_room, "@neighbour:localhost").await;
    let data = &hive.data;
    let nb = data.join("agents/neighbour");
    assert!(nb.join("state/secret.txt").is_file(), "{neighbour}");

    let secrets = serde_json::json!({
        "operator": data.join("operator.json"),
        "tokens": data.join("appservice/tokens.json"),
        "registration": data.join("appservice/registration.yaml"),
        "core_db": data.join("c0re.db"),
        "core_db_wal": data.join("c0re.db-wal"),
        "core_db_shm": data.join("c0re.db-shm"),
        "homeserver_db": data.join("synapse/homeserver.db"),
        "signing_key": data.join("synapse/signing.key"),
        "shared_secret": data.join("synapse/registration_shared_secret"),
        "host_secret": secret,
    });
    // A read that fails only because the path is wrong proves nothing: each target is there.
    for (name, path) in secrets.as_object().unwrap() {
        let path = Path::new(path.as_str().unwrap());
        if !path.is_file() {
            eprintln!("note: {name} ({}) is not on the host", path.display());
            assert!(
                name.starts_with("core_db_"),
                "{} is missing",
                path.display()
            );
        }
    }
    for p in ["agent.log", "sock/c0re.sock", "sock/tools.sock"] {
        assert!(nb.join(p).exists(), "{} is missing", nb.join(p).display());
    }
    let pid_file = data.join("run/c0re.pid");
    // Outside the data dir, named after this run: a leak from one run fails that run only.
    let run = hive
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let host_files = serde_json::json!({
        "write_usr": format!("/usr/pwned-{run}"),
        "write_root": format!("/pwned-{run}"),
        "write_var": format!("/var/pwned-{run}"),
        "write_tmp_escape": format!("/tmp/../usr/pwned2-{run}"),
    });
    let targets = serde_json::json!({
        "data": data,
        "neighbour": nb,
        "agent_dir_file": data.join("agents/jail/pwned"),
        "sock_file": data.join("agents/jail/sock/pwned"),
        "secrets": secrets,
        "pid_file": pid_file,
        "core_pid": hive.core.as_ref().unwrap().id(),
        "port": hive.cfg.homeserver_url.port().unwrap(),
        "host_files": host_files,
    });
    let jail_room = op.join("agent-jail").await;
    op.send(&jail_room, &targets.to_string()).await;
    let jail = reply_of(&op, &jail_room, "@jail:localhost").await;
    eprintln!("the probe's report: {jail}");
    // Files the agent wrote outside the data dir go first, so no failure below leaves them.
    let leaked: Vec<&str> = host_files
        .as_object()
        .unwrap()
        .values()
        .filter_map(|p| p.as_str())
        .filter(|p| Path::new(p).exists())
        .collect();
    for p in &leaked {
        std::fs::remove_file(p).unwrap(); // the host is left clean, the run fails below
    }
    assert!(
        leaked.is_empty(),
        "written by the agent: {leaked:?}: {jail}"
    );

    assert_eq!(
        jail["write_state"], "ok",
        "the state dir is writable: {jail}"
    );
    for escape in ALWAYS_FAIL {
        assert!(
            jail.get(escape).is_some_and(|r| r != "ok"),
            "{escape} must fail: {jail}"
        );
    }
    assert_eq!(jail["caps"], "0000000000000000", "no capability: {jail}");
    assert_eq!(
        jail["env"],
        serde_json::json!(["HOME", "HYPERHIVE_AGENT", "LANG", "PATH"]),
        "nothing of the core's environment: {jail}"
    );
    // Nothing reached the host.
    assert!(data.join("agents/jail/state/note").is_file());
    for p in [
        data.join("pwned"),
        data.join("agents/jail/pwned"),
        data.join("agents/jail/sock/pwned"),
        data.join("agents/jail/current/pwned"),
    ] {
        assert!(!p.exists(), "{} was written by the agent", p.display());
    }
    let toml = std::fs::read_to_string(data.join("agents/jail/current/agent.toml")).unwrap();
    assert_eq!(toml, COMMAND_BRAIN, "its config generation is untouched");
    // The core was neither stopped nor killed: it still answers and stops cleanly.
    op.send(&neighbour_room, "again").await;
    op.wait_until(
        &neighbour_room,
        Duration::from_secs(60),
        "the neighbour's second reply",
        |m| {
            m.iter()
                .filter(|x| x.sender == "@neighbour:localhost")
                .count()
                >= 2
        },
    )
    .await;
    assert_eq!(hive.stop_core().code(), Some(0), "{}", hive.core_log());
    Findings { jail, neighbour }
}

/// Makes `dir` (a temp dir tempfile made 0700) enterable by other uids, and checks every
/// directory above it already is.
fn enterable_by_others(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for up in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(up).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{} (mode {mode:o}) cannot be entered by other uids",
            up.display()
        );
    }
}

/// The first message `sender` posted in `room`, parsed as JSON.
async fn reply_of(op: &common::Operator, room: &matrix_sdk::Room, sender: &str) -> Value {
    let msgs = op
        .wait_until(room, Duration::from_secs(90), "the agent's reply", |m| {
            m.iter().any(|x| x.sender == sender)
        })
        .await;
    let body = &msgs.iter().find(|x| x.sender == sender).unwrap().body;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not the agent's JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwrap_sandbox_holds() {
    if let Err(e) = hyperhive::runtime::bwrap::ensure_installed() {
        panic!("the bwrap runtime cannot be tested: {e:#}");
    }
    let Findings { jail, .. } = attack("[runtime]\nkind = \"bwrap\"\n", false).await;
    for escape in ["net_homeserver", "net_outside"] {
        assert_ne!(
            jail[escape], "ok",
            "{escape} must fail in the sandbox: {jail}"
        );
    }
    // The data dir lives under /tmp in tests, so inside the sandbox that path is in the private
    // /tmp (bwrap made the directories holding the state dir's mount point there): writes may
    // succeed there but never reach the host (checked in `attack`), and a listing shows
    // nothing of the host's data dir.
    for (listing, host_only) in [
        (
            "list_data_dir",
            ["operator.json", "c0re.db", "appservice", "synapse", "run"],
        ),
        ("list_agents_dir", ["neighbour"; 5]),
    ] {
        let entries = jail[format!("{listing}_entries")].as_array().cloned();
        for entry in host_only {
            assert!(
                !entries.iter().flatten().any(|e| e == entry),
                "{listing} shows the host's {entry}: {jail}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_own_uids_hold() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "agents get uids of their own only when the hive runs as root"
    );
    let Findings { jail, neighbour } = attack(
        "[runtime]\nkind = \"process\"\nallow_unsandboxed = true\n",
        true,
    )
    .await;
    for escape in [
        "write_data_dir",
        "write_agent_dir",
        "list_data_dir",
        "list_agents_dir",
    ] {
        assert_ne!(
            jail[escape], "ok",
            "{escape} must fail as its own uid: {jail}"
        );
    }
    // Errors, not absence: the files are there and the uid may not touch them.
    for denied in [
        "read_operator",
        "read_tokens",
        "read_core_db",
        "read_neighbour_secret",
    ] {
        assert_eq!(jail[denied], "PermissionError", "{denied}: {jail}");
    }
    assert_eq!(
        jail["signal_core"], "PermissionError",
        "kill(core, 0) is EPERM: {jail}"
    );
    let (uid, theirs) = (
        jail["uid"].as_u64().unwrap(),
        neighbour["uid"].as_u64().unwrap(),
    );
    assert!(uid >= 600_000, "the agent runs as a uid of its own: {jail}");
    assert!(theirs >= 600_000, "so does its neighbour: {neighbour}");
    assert_ne!(
        uid, theirs,
        "each agent has its own uid: {jail} {neighbour}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_refuses_own_code_without_opt_in() {
    let mut hive = TestHive::with_config(
        &[
            ("jail", COMMAND_BRAIN.to_owned()),
            ("echo", common::echo_bot(&[])),
        ],
        "[runtime]\nkind = \"process\"\n",
    )
    .await;
    common::write_script(&hive.bots.join("jail"), "probe.py", PROBE);
    hive.start_core();
    let op = hive.operator().await;
    let jail = op.join("agent-jail").await;
    op.wait_until(&jail, Duration::from_secs(60), "the refusal", |m| {
        m.iter().any(|x| {
            x.body.contains("is not started") && x.body.contains("runtime.allow_unsandboxed")
        })
    })
    .await;
    let control = op.join("hive-c0re").await;
    op.wait_until(
        &control,
        Duration::from_secs(60),
        "the start-up notice",
        |m| {
            m.iter().any(|x| {
                x.body.contains("Not every agent is sandboxed")
                    && x.body.contains("jail")
                    && x.body.contains("is not started")
                    && x.body.contains("Unsandboxed, it would run as")
            })
        },
    )
    .await;
    // A message the refused agent would answer if its code ran.
    op.send(&jail, "{}").await;
    let echo = op.join("agent-echo").await;
    op.send(&echo, "ping").await;
    op.wait_until(&echo, Duration::from_secs(60), "pong", |m| {
        m.iter()
            .any(|x| x.sender == "@echo:localhost" && x.body == "pong")
    })
    .await;
    assert!(
        !hive.data.join("agents/jail/state/note").exists(),
        "the refused agent's code never ran"
    );
    assert_eq!(hive.stop_core().code(), Some(0));
}
