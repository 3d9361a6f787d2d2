//! The bwrap runtime, attacked from inside: an agent whose brain tries to write outside its
//! state dir, read the core's tokens and a host secret, reach the homeserver, and use
//! capabilities. Every attempt fails; its own state dir works.

mod common;

use std::time::Duration;

use common::TestHive;

const PROBE: &str = r#"#!/usr/bin/env python3
import json, os, socket, sys
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
    with open(path) as f:
        f.read()
attempt("write_state", lambda: write(os.path.join(os.environ["HOME"], "note")))
attempt("write_data_dir", lambda: write(t["data_file"]))
attempt("write_usr", lambda: write("/usr/pwned"))
attempt("write_root", lambda: write("/pwned"))
attempt("write_var", lambda: write("/var/pwned"))
attempt("write_tmp_escape", lambda: write("/tmp/../usr/pwned2"))
attempt("write_config", lambda: write("/hive/config/agent.toml"))
attempt("write_socket_dir", lambda: write(t["sock_file"]))
attempt("read_tokens", lambda: read(t["tokens"]))
attempt("read_host_secret", lambda: read(t["secret"]))
attempt("read_shadow", lambda: read("/etc/shadow"))
attempt("list_root_home", lambda: os.listdir("/root"))
attempt("net_homeserver", lambda: socket.create_connection(("127.0.0.1", t["port"]), 2))
attempt("net_outside", lambda: socket.create_connection(("1.1.1.1", 53), 2))
res["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
res["env"] = sorted(os.environ)
print(json.dumps({"reply": json.dumps(res, sort_keys=True)}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bwrap_sandbox_holds() {
    if let Err(e) = hyperhive::runtime::bwrap::ensure_installed() {
        panic!("the bwrap runtime cannot be tested: {e:#}");
    }
    let mut hive = TestHive::with_config(
        &[(
            "jail",
            "[brain]\nkind = \"command\"\ncommand = [\"./probe.py\"]\n".to_owned(),
        )],
        "[runtime]\nkind = \"bwrap\"\n",
    )
    .await;
    let probe = hive.bots.join("jail/probe.py");
    std::fs::write(&probe, PROBE).unwrap();
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let secret = hive.dir.path().join("host-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    hive.start_core();
    let op = hive.operator().await;
    let jail = op.join("agent-jail").await;
    let targets = serde_json::json!({
        "data_file": hive.data.join("pwned"),
        "sock_file": hive.data.join("agents/jail/sock/pwned"),
        "tokens": hive.data.join("appservice/tokens.json"),
        "secret": secret,
        "port": hive.cfg.homeserver_url.port().unwrap(),
    });
    op.send(&jail, &targets.to_string()).await;
    let msgs = op
        .wait_until(&jail, Duration::from_secs(60), "the probe's report", |m| {
            m.iter().any(|x| x.sender == "@jail:localhost")
        })
        .await;
    let report = &msgs
        .iter()
        .find(|x| x.sender == "@jail:localhost")
        .unwrap()
        .body;
    let r: serde_json::Value = serde_json::from_str(report)
        .unwrap_or_else(|e| panic!("not the probe's JSON ({e}): {report}"));
    assert_eq!(r["write_state"], "ok", "the state dir is writable: {r}");
    // The data dir lives under /tmp in tests, so inside the sandbox that path is in the private
    // /tmp: the write may succeed there, but must never reach the host (checked below).
    for escape in [
        "write_usr",
        "write_root",
        "write_var",
        "write_tmp_escape",
        "write_config",
        "write_socket_dir",
        "read_tokens",
        "read_host_secret",
        "read_shadow",
        "list_root_home",
        "net_homeserver",
        "net_outside",
    ] {
        assert_ne!(
            r[escape], "ok",
            "{escape} must fail inside the sandbox: {r}"
        );
    }
    assert_eq!(
        r["caps"], "0000000000000000",
        "every capability dropped: {r}"
    );
    assert_eq!(
        r["env"],
        serde_json::json!(["HOME", "HYPERHIVE_AGENT", "LANG", "PATH"]),
        "nothing of the core's environment: {r}"
    );
    assert!(hive.data.join("agents/jail/state/note").is_file());
    for p in [
        hive.data.join("pwned"),
        hive.data.join("agents/jail/sock/pwned"),
    ] {
        assert!(!p.exists(), "{} was written from the sandbox", p.display());
    }
    assert!(!std::path::Path::new("/usr/pwned").exists());
    assert_eq!(hive.stop_core().code(), Some(0));
}
