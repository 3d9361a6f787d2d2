//! The Nix side of the hive, checked without nixpkgs (none is reachable here): every `.nix`
//! file parses, and `nix/agents.nix` reads `bots/` exactly as the Rust code does (names,
//! container names, uid bases, resources), and refuses what the Rust code refuses, naming the
//! agent and the key. nix-instantiate missing is a failure, not a skip (tests/common/nix.rs).

mod common;

use std::path::{Path, PathBuf};

use common::nix_bin::instantiate;
use hyperhive::agent_spec::AgentSpec;
use hyperhive::agent_spec::resources::DEFAULT;
use hyperhive::runtime::nixos_container::{container_name, uid_base};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            if name != "target" && name != ".git" {
                nix_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "nix") {
            out.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&repo(), &mut files);
    for must in [
        "nix/agents.nix",
        "nix/module.nix",
        "nix/tests/vm.nix",
        "flake.nix",
    ] {
        assert!(files.iter().any(|f| f.ends_with(must)), "{must}: {files:?}");
    }
    for f in &files {
        let out = instantiate(&["--parse", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Evaluates `nix/agents.nix` applied to `args` (a Nix attrset expression).
fn agents(args: &str) -> Result<Value, String> {
    let expr = format!("import {}/nix/agents.nix ({args})", repo().display());
    let out = instantiate(&["--eval", "--strict", "--json", "-E", &expr]);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn agents_nix_reads_bots_as_rust_does() {
    let bots = repo().join("bots");
    let got = agents(&bots_arg(&bots)).unwrap();
    let specs = hyperhive::agent_spec::load_all(&bots).unwrap();
    assert_eq!(got.as_object().unwrap().len(), specs.len(), "{got}");
    for spec in specs {
        let name = spec.name.as_str();
        let a = &got[name];
        let r = spec.resources.over(DEFAULT);
        assert_eq!(a["name"], name);
        assert_eq!(a["container"], container_name(&spec.name), "{name}");
        assert_eq!(a["uidBase"], uid_base(&spec.name), "{name}");
        assert_eq!(a["resources"]["memoryBytes"], r.memory_bytes, "{name}");
        assert_eq!(a["resources"]["cpuPercent"], r.cpu_percent, "{name}");
        assert_eq!(a["resources"]["tasks"], r.tasks, "{name}");
        assert_eq!(
            a["spec"]["display_name"],
            spec.display_name.as_str(),
            "{name}"
        );
    }
}

/// `{ bots = <dir>; }`, the path built from a string (any directory name is fine).
fn bots_arg(dir: &Path) -> String {
    format!(
        "{{ bots = /. + {}; }}",
        serde_json::to_string(dir.to_str().unwrap()).unwrap()
    )
}

fn bot(dir: &Path, name: &str, toml: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("agent.toml"), toml).unwrap();
}

const SCRIPTED: &str = "display_name = \"x\"\n[brain]\nkind = \"scripted\"\n";

#[test]
fn resources_and_defaults_match_rust() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!("{SCRIPTED}[resources]\nmemory = \"512M\"\ncpu = \"250%\"\ntasks = 64\n");
    bot(dir.path(), "echo", &toml);
    let spec = AgentSpec::load(&dir.path().join("echo")).unwrap();
    let got = agents(&bots_arg(dir.path())).unwrap();
    let r = spec.resources.over(DEFAULT);
    assert_eq!(got["echo"]["resources"]["memoryBytes"], r.memory_bytes);
    assert_eq!(got["echo"]["resources"]["cpuPercent"], r.cpu_percent);
    assert_eq!(got["echo"]["resources"]["tasks"], r.tasks);
    // Inline agents give the same answer as a directory.
    let inline = agents(
        "{ agents.echo = { display_name = \"x\"; brain.kind = \"scripted\"; \
         resources = { memory = \"512M\"; cpu = \"250%\"; tasks = 64; }; }; }",
    )
    .unwrap();
    assert_eq!(inline, got);
    // Hive-wide defaults apply to what the agent leaves out.
    let d = agents(
        "{ agents.echo = { }; defaults = { memory = \"1G\"; cpu = \"50%\"; tasks = 100; }; }",
    )
    .unwrap();
    assert_eq!(d["echo"]["resources"]["memoryBytes"], 1u64 << 30);
    assert_eq!(d["echo"]["resources"]["cpuPercent"], 50);
    assert_eq!(d["echo"]["resources"]["tasks"], 100);
}

#[test]
fn bad_values_and_hostile_names_throw_naming_agent_and_key() {
    let cases = [
        ("memory = \"3Q\"", "resources.memory"),
        ("memory = \"1M\"", "resources.memory"),
        ("memory = \"lots\"", "resources.memory"),
        ("cpu = \"150\"", "resources.cpu"),
        ("cpu = \"0%\"", "resources.cpu"),
        ("tasks = 2", "resources.tasks"),
        ("swap = \"1G\"", "resources.swap"),
    ];
    for (line, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        bot(
            dir.path(),
            "echo",
            &format!("{SCRIPTED}[resources]\n{line}\n"),
        );
        // The Rust side refuses it too.
        assert!(AgentSpec::load(&dir.path().join("echo")).is_err(), "{line}");
        let err = agents(&bots_arg(dir.path())).unwrap_err();
        assert!(
            err.contains("hyperhive agent echo") && err.contains(key),
            "{line}: {err}"
        );
    }
    for hostile in ["Evil", "a.b", "x y", "hive", &"a".repeat(33)] {
        let dir = tempfile::tempdir().unwrap();
        bot(dir.path(), hostile, SCRIPTED);
        let err = agents(&bots_arg(dir.path())).unwrap_err();
        assert!(
            err.contains(&format!("hyperhive agent \"{hostile}\"")),
            "{hostile}: {err}"
        );
    }
}

/// `hive registration` (the module's oneshot before Synapse): prepares the data dir and writes
/// the appservice registration, printing its path; run twice, it keeps the same tokens.
#[test]
fn registration_subcommand_writes_the_registration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        let out = std::process::Command::new(common::HIVE)
            .args(["registration", "--data-dir", data.to_str().unwrap()])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert_eq!(path, data.join("appservice/registration.yaml"));
        std::fs::read_to_string(path).unwrap()
    };
    let first = run();
    assert!(first.contains("as_token"), "{first}");
    assert_eq!(run(), first);
    // The tokens are the core's: readable by its user only.
    use std::os::unix::fs::PermissionsExt;
    for f in ["appservice/registration.yaml", "appservice/tokens.json"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} is {mode:o}");
    }
}
