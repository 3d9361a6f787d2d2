//! Agents attacked from inside, in every runtime that runs code of an agent's own: a command
//! brain (`jail`) tries to read the hive's secrets (the operator's password, the appservice
//! tokens, the databases, Synapse's signing key and shared secret), another agent's state dir,
//! log and sockets, to write outside its state dir, and to signal or trace the core. Every
//! attempt fails with the error that names why (its errno), in the bwrap sandbox and as a uid
//! of its own in the `process` runtime; its own state dir works. The same probe run by the test
//! itself, unsandboxed, gets through every one of them (the control), so each failure is the
//! sandbox's doing. Without `runtime.allow_unsandboxed`, the process runtime refuses such an
//! agent (and says why) while a scripted agent runs.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestHive;
use serde_json::Value;

/// The attacker: runs once, on a message whose body is the JSON of its targets, and replies with
/// a JSON report naming each attempt `"ok"` (it got through), the errno name of the `OSError`
/// that stopped it (`"ENOENT"`, `"EACCES"` …), `"timeout"`, or `"<Type>: <text>"` for anything
/// else (a probe's own bug, e.g. a `KeyError`, never matches an errno the test expects). The
/// test runs the same probe unsandboxed as a control (`control`), where the reads and writes
/// must get through, so each failure in a sandbox means the sandbox stopped it. Writes open for
/// appending and write nothing: a file a write may reach is never changed.
const PROBE: &str = r#"#!/usr/bin/env python3
import ctypes, errno, json, os, socket, sys
req = json.load(sys.stdin)
t = json.loads(req["message"]["body"])
res = {}
def why(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, OSError) and e.errno in errno.errorcode:
        return errno.errorcode[e.errno]
    return "%s: %s" % (type(e).__name__, e)
def attempt(name, fn):
    try:
        fn()
        res[name] = "ok"
    except Exception as e:
        res[name] = why(e)
def write(path):
    with open(path, "a"):
        pass
def read(path):
    with open(path, "rb") as f:
        f.read()
def hello(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    key = os.path.basename(path) + "_answer"
    try:
        s.sendall(b'{"op":"hello","agent":"neighbour","pid":1}\n')
        res[key] = s.recv(4096).decode(errors="replace")
    except Exception as e:
        res[key] = why(e)
def ptrace_seize(pid):
    # PTRACE_SEIZE: attaches without stopping the tracee; the tracer's exit detaches it.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(ctypes.c_long(0x4206), ctypes.c_int(pid), None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def ls(name, path):
    res[name + "_entries"] = sorted(os.listdir(path))
config = t.get("config") or os.path.dirname(os.path.abspath(sys.argv[0]))
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
attempt("read_core_pid_file", lambda: read(t["pid_file"]))
attempt("signal_core", lambda: os.kill(t["core_pid"], 0))
attempt("ptrace_core", lambda: ptrace_seize(t["core_pid"]))
attempt("read_core_environ", lambda: read("/proc/%d/environ" % t["core_pid"]))
attempt("read_shadow", lambda: read("/etc/shadow"))
attempt("list_root_home", lambda: os.listdir("/root"))
attempt("net_homeserver", lambda: socket.create_connection(("127.0.0.1", t["port"]), 2).close())
attempt("net_outside", lambda: socket.create_connection(("1.1.1.1", 53), 2).close())
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

/// Which runtime's column of [`EXPECT`] a report is checked against.
#[derive(Clone, Copy, Debug)]
enum Column {
    Bwrap,
    Process,
    /// The probe run by the test itself: the same user (root), a plain subprocess, no sandbox.
    Control,
}

/// What each attempt must end in: `"ok"`, an errno name, or `"*"` (not checked: it depends on
/// the machine). Columns: the bwrap sandbox (a target outside it is not there: ENOENT; what is
/// bound read-only: EROFS; the core's pid is not in its pid namespace: ESRCH; only a private
/// loopback: ECONNREFUSED, ENETUNREACH), an agent's own uid in the process runtime (the host's
/// files, not its own: EACCES, EPERM), and the control, where every read and write gets through,
/// so that a failure in a sandbox is the sandbox's doing and not a wrong path or a probe's bug.
const EXPECT: &[(&str, &str, &str, &str)] = &[
    // (probe, bwrap, process, control)
    ("write_state", "ok", "ok", "ok"),
    // The data dir lives under /tmp in tests: in the sandbox, that path is in its private /tmp
    // (the directories bwrap made for the state dir's mount point), never the host's.
    ("write_data_dir", "ok", "EACCES", "ok"),
    ("write_agent_dir", "ok", "EACCES", "ok"),
    ("write_config", "EROFS", "EACCES", "ok"),
    ("write_config_new", "EROFS", "EACCES", "ok"),
    ("write_socket_dir", "EROFS", "EACCES", "ok"),
    ("write_usr", "EROFS", "EACCES", "ok"),
    ("write_root", "EROFS", "EACCES", "ok"),
    ("write_var", "ENOENT", "EACCES", "ok"),
    ("write_tmp_escape", "EROFS", "EACCES", "ok"),
    ("read_operator", "ENOENT", "EACCES", "ok"),
    ("read_tokens", "ENOENT", "EACCES", "ok"),
    ("read_registration", "ENOENT", "EACCES", "ok"),
    ("read_core_db", "ENOENT", "EACCES", "ok"),
    ("read_core_db_wal", "ENOENT", "EACCES", "ok"),
    ("read_core_db_shm", "ENOENT", "EACCES", "ok"),
    ("read_homeserver_db", "ENOENT", "EACCES", "ok"),
    ("read_signing_key", "ENOENT", "EACCES", "ok"),
    ("read_shared_secret", "ENOENT", "EACCES", "ok"),
    ("read_host_secret", "ENOENT", "EACCES", "ok"),
    ("list_data_dir", "ok", "EACCES", "ok"),
    ("list_agents_dir", "ok", "EACCES", "ok"),
    ("list_neighbour_state", "ENOENT", "EACCES", "ok"),
    ("read_neighbour_secret", "ENOENT", "EACCES", "ok"),
    ("read_neighbour_log", "ENOENT", "EACCES", "ok"),
    ("hello_neighbour_c0re_sock", "ENOENT", "EACCES", "ok"),
    ("hello_neighbour_tools_sock", "ENOENT", "EACCES", "ok"),
    ("read_core_pid_file", "ENOENT", "EACCES", "ok"),
    ("signal_core", "ESRCH", "EPERM", "ok"),
    ("ptrace_core", "ESRCH", "EPERM", "ok"),
    ("read_core_environ", "ENOENT", "EACCES", "ok"),
    ("read_shadow", "ENOENT", "EACCES", "ok"),
    ("list_root_home", "ENOENT", "EACCES", "ok"),
    // The process runtime isolates files and processes, not the network.
    ("net_homeserver", "ECONNREFUSED", "ok", "ok"),
    ("net_outside", "ENETUNREACH", "*", "*"),
];

/// Every attempt of `report` against its `column` of [`EXPECT`], all mismatches at once;
/// `absent` names the targets that were not on the host (not probed).
fn check(report: &Value, column: Column, absent: &[String]) {
    let mut wrong = Vec::new();
    for (probe, bwrap, process, control) in EXPECT {
        let want = match column {
            Column::Bwrap => bwrap,
            Column::Process => process,
            Column::Control => control,
        };
        let got = &report[probe];
        if got.is_null() && absent.iter().any(|a| probe.ends_with(a.as_str())) {
            continue;
        }
        if *want != "*" && got != want {
            wrong.push(format!("{probe}: {got} (expected {want})"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{column:?}: {} attempt(s) ended otherwise than expected:\n  {}\nthe report: {report}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

/// Runs the probe as the test's own user, unsandboxed (a plain subprocess), on `targets`, with
/// the jail's real config generation as its config dir and `home` as HOME. Every file it made
/// is removed before this returns (the report says what it reached).
fn control(targets: &Value, dir: &Path, config: &Path, made: &[PathBuf]) -> Value {
    let home = dir.join("control-home");
    std::fs::create_dir_all(&home).unwrap();
    let script = dir.join("control-probe.py");
    std::fs::write(&script, PROBE).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut targets = targets.clone();
    targets["config"] = serde_json::json!(config);
    let request = serde_json::json!({"message": {"body": targets.to_string()}});
    let mut child = Command::new(&script)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // The host is left as it was before anything is asserted.
    for p in made {
        if p.exists() {
            std::fs::remove_file(p).unwrap();
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the control probe failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_str(&stdout).unwrap();
    serde_json::from_str(reply["reply"].as_str().unwrap()).unwrap()
}

/// What one attack found: the probe's report and the neighbour's.
struct Findings {
    jail: Value,
    neighbour: Value,
    /// The control's report (the probe unsandboxed).
    outside: Value,
}

/// Runs the probe as agent `jail` beside agent `neighbour` in a hive with `runtime_toml`, its
/// report checked against `column`, and the same probe unsandboxed as the control;
/// `chmod_dir` makes the test's temp dir enterable by other uids first (agents on uids of their
/// own need every directory above the data dir enterable). Checks what reached the host;
/// returns the reports for the runtime's own checks.
async fn attack(runtime_toml: &str, chmod_dir: bool, column: Column) -> Findings {
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

    let mut secrets = serde_json::json!({
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
    // A read that fails only because the path is wrong proves nothing: each target is there
    // (the control reads it), but for sqlite's side files, which come and go.
    let mut absent = Vec::new();
    for (name, path) in secrets.as_object().unwrap() {
        let path = Path::new(path.as_str().unwrap());
        if !path.is_file() {
            eprintln!("note: {name} ({}) is not on the host", path.display());
            assert!(
                name.starts_with("core_db_"),
                "{} is missing",
                path.display()
            );
            absent.push(name.clone());
        }
    }
    for name in &absent {
        secrets.as_object_mut().unwrap().remove(name);
    }
    for p in ["agent.log", "sock/c0re.sock", "sock/tools.sock"] {
        assert!(nb.join(p).exists(), "{} is missing", nb.join(p).display());
    }
    let pid_file = data.join("run/c0re.pid");
    assert!(pid_file.is_file(), "{} is missing", pid_file.display());
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
    let config = data.join("agents/jail/current");
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
    let host_paths: Vec<PathBuf> = host_files
        .as_object()
        .unwrap()
        .values()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    let leaked: Vec<&PathBuf> = host_paths.iter().filter(|p| p.exists()).collect();
    for p in &leaked {
        std::fs::remove_file(p).unwrap(); // the host is left clean, the run fails below
    }
    assert!(
        leaked.is_empty(),
        "written by the agent: {leaked:?}: {jail}"
    );
    check(&jail, column, &absent);
    assert_eq!(jail["caps"], "0000000000000000", "no capability: {jail}");
    assert_eq!(
        jail["env"],
        serde_json::json!(["HOME", "HYPERHIVE_AGENT", "LANG", "PATH"]),
        "nothing of the core's environment: {jail}"
    );
    // Nothing reached the host.
    assert!(data.join("agents/jail/state/note").is_file());
    let in_data = [
        data.join("pwned"),
        data.join("agents/jail/pwned"),
        data.join("agents/jail/sock/pwned"),
        config.join("pwned"),
    ];
    for p in &in_data {
        assert!(!p.exists(), "{} was written by the agent", p.display());
    }
    let toml = std::fs::read_to_string(config.join("agent.toml")).unwrap();
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

    // The control: the same probe on the same targets, unsandboxed, gets through.
    let made: Vec<PathBuf> = host_paths.iter().chain(&in_data).cloned().collect();
    let outside = control(&targets, hive.dir.path(), &config, &made);
    eprintln!("the control's report: {outside}");
    check(&outside, Column::Control, &absent);
    assert_eq!(
        std::fs::read_to_string(config.join("agent.toml")).unwrap(),
        COMMAND_BRAIN,
        "the control changed no file"
    );
    assert_eq!(hive.stop_core().code(), Some(0), "{}", hive.core_log());
    Findings {
        jail,
        neighbour,
        outside,
    }
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
    let Findings { jail, outside, .. } =
        attack("[runtime]\nkind = \"bwrap\"\n", false, Column::Bwrap).await;
    // The data dir lives under /tmp in tests, so inside the sandbox that path is in the private
    // /tmp (bwrap made the directories holding the state dir's mount point there): writes may
    // succeed there but never reach the host (checked in `attack`), and a listing shows
    // nothing of the host's data dir, which the control's listing shows.
    for (listing, host_only) in [
        (
            "list_data_dir",
            ["operator.json", "c0re.db", "appservice", "synapse", "run"],
        ),
        ("list_agents_dir", ["neighbour"; 5]),
    ] {
        let seen = |report: &Value, entry: &str| {
            report[format!("{listing}_entries")]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e == entry))
        };
        for entry in host_only {
            assert!(
                seen(&outside, entry),
                "the control's {listing} shows {entry}: {outside}"
            );
            assert!(
                !seen(&jail, entry),
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
    let Findings {
        jail, neighbour, ..
    } = attack(
        "[runtime]\nkind = \"process\"\nallow_unsandboxed = true\n",
        true,
        Column::Process,
    )
    .await;
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
