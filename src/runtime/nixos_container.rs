//! The `nixos-container` runtime: each agent in a NixOS container of its own, declared by the
//! host's NixOS module (`nix/module.nix`, from the agent's `agent.toml` read as data through
//! `nix/agents.nix`), started and stopped by the core.
//!
//! The names and uid ranges the module declares are computed here and in `nix/agents.nix`
//! from the agent's name alone; `tests/nix.rs` evaluates the Nix side and compares.
//!
//! Each start of an agent's harness, the first and every one after a crash or an approved
//! config, is:
//! 1. `systemctl set-property --runtime container@<c>.service MemoryMax= CPUQuota= TasksMax=`
//!    — the limits of the config being started (the module declares those of its rebuild);
//! 2. `systemctl start container@<c>.service` — a fresh container (it was stopped when the
//!    last harness ended, and is ephemeral): nothing of the last run survives but the state dir
//!    (bind-mounted), so an approved config starts on a rebuilt container, that agent's alone;
//! 3. `systemd-run --machine=<c> --pipe --wait --collect --unit=hyperhive-agent` with the
//!    harness at its Nix store path (the host's store is shared with the container), its
//!    config generation, socket and state dir at the host's paths (the module's bind mounts),
//!    and the harness's scrubbed environment (`--setenv`; it holds no secret).
//!
//! When the harness ends (a crash, a stop, a restart, the hive's shutdown, a cancelled turn)
//! the container is stopped ([`after_stop`]): killing `systemd-run` alone would leave the
//! harness running inside. The agent's state dir is re-owned only after that, with nothing of
//! the container running. Steps 1 and 2 and the stop are data, run by the supervisor; step 3
//! is the harness's command ([`run_args`]). Inside, the harness is root of the container's own user namespace
//! (`privateUsers`: uid 0 there is [`uid_base`] here), with no network but loopback.
//!
//! Written against systemd's and nixos-container's documented interfaces and NOT run yet on a
//! NixOS host (this project's machines have none; docs/runtimes.md, docs/nixos.md).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{AgentLaunch, Runtime};
use crate::agent_spec::resources::Resources;
use sha2::{Digest, Sha256};

use crate::agent_spec::AgentName;

/// The container an agent runs in: `hh-` and the first 8 hex digits of the SHA-256 of its
/// name. `nixos-container` allows 11 characters (the host side of its veth is `ve-<name>`,
/// and an interface name has 15), fewer than an agent's name may have.
pub fn container_name(agent: &AgentName) -> String {
    format!("hh-{}", &hex_digest(agent.as_str())[..8])
}

/// The first host uid of the agent's container (`privateUsers`): root inside is this uid
/// outside, and the container owns the 65536 above it. `0x4000_0000 + (h mod 0x3ffe) * 65536`,
/// `h` the first 4 hex digits of the SHA-256 of its name: far above any system or
/// `runtime.uid_base` uid, below systemd's foreign range (`0x7ffe0000`). Two agents may land
/// on one range: [`clashes`] finds them, and the hive refuses to start them.
pub fn uid_base(agent: &AgentName) -> u32 {
    let h = u32::from_str_radix(&hex_digest(agent.as_str())[..4], 16).expect("hex digits");
    0x4000_0000 + (h % 0x3ffe) * 0x1_0000
}

/// Pairs of agents that would share a container name or a uid range (one would see, and a
/// destroy would kill, the other's processes), each pair once, in the order given.
pub fn clashes(agents: &[AgentName]) -> Vec<(AgentName, AgentName)> {
    let mut out = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        for b in &agents[i + 1..] {
            if uid_base(a) == uid_base(b) || container_name(a) == container_name(b) {
                out.push((a.clone(), b.clone()));
            }
        }
    }
    out
}

/// Why agents named `agents` cannot all run in NixOS containers: one line per clashing pair
/// (said by `hive check`, and refused by the core at start).
pub fn clash_errors(agents: &[AgentName]) -> Vec<String> {
    clashes(agents)
        .into_iter()
        .map(|(a, b)| {
            format!(
                "agents {a} and {b} would share a NixOS container's uid range: rename one of them"
            )
        })
        .collect()
}

fn hex_digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The unit the harness runs as inside its container (one per container: the container is
/// stopped after each run and ephemeral, so no unit of a last run is left).
pub const UNIT_IN_CONTAINER: &str = "hyperhive-agent";
/// `PATH` inside the container (NixOS: the system profile).
const CONTAINER_PATH: &str = "/run/current-system/sw/bin";
/// Where NixOS writes a declared container's settings (`nixos-containers` since 22.05,
/// `containers` before).
const DECLARED_IN: &[&str] = &["/etc/nixos-containers", "/etc/containers"];

/// The host unit of an agent's container.
pub fn host_unit(container: &str) -> String {
    format!("container@{container}.service")
}

/// `systemctl`'s arguments that set `r` on the container's unit until the next boot.
pub fn limit_args(container: &str, r: &Resources) -> Vec<String> {
    vec![
        "set-property".into(),
        "--runtime".into(),
        host_unit(container),
        format!("MemoryMax={}", r.memory_bytes),
        "MemorySwapMax=0".into(),
        format!("CPUQuota={}%", r.cpu_percent),
        format!("TasksMax={}", r.tasks),
    ]
}

/// What runs before the harness starts, in order: `systemctl` with these arguments (the
/// limits, then the container, stopped since the last run: see [`after_stop`]).
pub fn before_start(container: &str, r: &Resources) -> Vec<Vec<String>> {
    vec![
        limit_args(container, r),
        vec!["start".into(), host_unit(container)],
    ]
}

/// What runs once the harness has ended, and before the agent's files are prepared for its
/// next start: `systemctl` with these arguments. Killing `systemd-run` leaves the harness's
/// unit running in the container; stopping the container ends it (SIGTERM first, within the
/// container's orderly shutdown) and everything container root left behind.
///
/// `gone`: the harness should be dead already (it crashed, its turn was cancelled, its start
/// failed, or a core before this one left the container running): everything in the container
/// is killed first (`systemctl kill --signal=SIGKILL`), so a cancelled turn does not run on
/// to its end. Otherwise the harness gets SIGTERM and [`STOP_TIMEOUT`] to finish its turn.
pub fn after_stop(container: &str, gone: bool) -> Vec<Vec<String>> {
    let unit = host_unit(container);
    let mut steps = Vec::new();
    if gone {
        // `--kill-whom=all`, the default: nspawn, the container's init and everything in it.
        steps.push(vec!["kill".into(), "--signal=SIGKILL".into(), unit.clone()]);
    }
    steps.push(vec!["stop".into(), unit.clone()]);
    // A killed unit is `failed`: cleared, so the next start is a plain one.
    steps.push(vec!["reset-failed".into(), unit]);
    steps
}

/// How long the harness has, in its container, between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: &str = "10s";

/// `systemd-run`'s arguments that run `program args` in `container` with exactly `envs`, its
/// stdio the caller's, returning when it ends.
pub fn run_args(
    container: &str,
    dir: &Path,
    program: &Path,
    args: &[OsString],
    envs: &[(OsString, OsString)],
) -> Vec<OsString> {
    let mut a: Vec<OsString> = [
        format!("--machine={container}"),
        "--pipe".into(),
        "--wait".into(),
        "--collect".into(),
        "--quiet".into(),
        "--service-type=exec".into(),
        format!("--unit={UNIT_IN_CONTAINER}"),
        format!("--property=TimeoutStopSec={STOP_TIMEOUT}"),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    let mut wd = OsString::from("--working-directory=");
    wd.push(dir);
    a.push(wd);
    for (k, v) in envs {
        let mut e = OsString::from("--setenv=");
        e.push(k);
        e.push("=");
        e.push(v);
        a.push(e);
    }
    a.push("--".into());
    a.push(program.into());
    a.extend(args.iter().cloned());
    a
}

/// Why `path` cannot be the harness in a container: only the Nix store is shared with it.
pub fn check_in_store(path: &Path) -> Result<(), String> {
    if path.starts_with("/nix/store") {
        Ok(())
    } else {
        Err(format!(
            "{} is not in the Nix store: a NixOS container sees the host's /nix/store only (install hyperhive with the NixOS module)",
            path.display()
        ))
    }
}

/// Why `config` (a config generation, resolved) is not one the container has at that path:
/// the module bind-mounts `<agent dir>/gen`, nothing else of the agent's config.
pub fn check_generation(config: &Path, agent_dir: &Path) -> Result<(), String> {
    if config.starts_with(agent_dir.join("gen")) {
        Ok(())
    } else {
        Err(format!(
            "the config generation {} is outside {}, which is all the container sees of it",
            config.display(),
            agent_dir.join("gen").display()
        ))
    }
}

/// Whether this host can run NixOS containers for the core: systemd as PID 1, root, and
/// `systemctl` and `systemd-run` on `PATH`.
pub fn available() -> Result<(), super::placement::Lacking> {
    find().map(|_| ()).map_err(Into::into)
}

fn find() -> anyhow::Result<(PathBuf, PathBuf)> {
    if !Path::new("/run/systemd/system").is_dir() {
        bail!("systemd is not PID 1 here");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("hive-c0re is not root (it starts containers and sets their limits)");
    }
    let systemctl = crate::fsutil::which("systemctl").context("systemctl is not on PATH")?;
    let run = crate::fsutil::which("systemd-run").context("systemd-run is not on PATH")?;
    Ok((systemctl, run))
}

/// The runtime, with the programs it runs.
pub struct NixosContainer {
    systemctl: PathBuf,
    systemd_run: PathBuf,
}

impl NixosContainer {
    fn systemctl(&self, steps: Vec<Vec<String>>) -> Vec<std::process::Command> {
        steps
            .into_iter()
            .map(|args| {
                let mut c = std::process::Command::new(&self.systemctl);
                c.args(args);
                c
            })
            .collect()
    }

    /// What stops `agent`'s container ([`after_stop`]), as commands.
    pub fn stop_commands(&self, agent: &AgentName, gone: bool) -> Vec<std::process::Command> {
        self.systemctl(after_stop(&container_name(agent), gone))
    }

    pub fn new() -> anyhow::Result<Self> {
        let (systemctl, systemd_run) = find()?;
        Ok(Self {
            systemctl,
            systemd_run,
        })
    }
}

impl Runtime for NixosContainer {
    fn name(&self) -> &'static str {
        "nixos-container"
    }

    fn before_start(&self, launch: &AgentLaunch) -> anyhow::Result<Vec<std::process::Command>> {
        let container = container_name(&launch.name);
        if !DECLARED_IN
            .iter()
            .any(|d| Path::new(d).join(format!("{container}.conf")).is_file())
        {
            bail!(
                "no NixOS container {container} is declared for {}: add the agent to services.hyperhive.bots and run nixos-rebuild switch (docs/nixos.md)",
                launch.name
            );
        }
        // The module bind-mounts it: nspawn fails on a missing source.
        std::fs::create_dir_all(&launch.socket_dir)
            .with_context(|| format!("cannot create {}", launch.socket_dir.display()))?;
        Ok(self.systemctl(before_start(&container, &launch.resources)))
    }

    fn after_stop(&self, launch: &AgentLaunch, gone: bool) -> Vec<std::process::Command> {
        self.stop_commands(&launch.name, gone)
    }

    /// systemd-run exits 255 when the unit it waited for was killed by a signal.
    fn describe_exit(&self, status: std::process::ExitStatus) -> String {
        match status.code() {
            Some(255) => "killed in its container (a signal, e.g. the kernel's OOM killer)".into(),
            _ => status.to_string(),
        }
    }

    fn command(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command> {
        let config = std::fs::canonicalize(&launch.spec_dir)
            .with_context(|| format!("no config generation at {}", launch.spec_dir.display()))?;
        let agent_dir = launch
            .state_dir
            .parent()
            .context("the state dir has no parent")?;
        check_generation(&config, agent_dir).map_err(anyhow::Error::msg)?;
        let (exe, pre) = super::process::harness_program(None)?;
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        check_in_store(&exe).map_err(anyhow::Error::msg)?;
        // The harness's arguments and environment as every runtime gives them, carried into
        // the container (systemd-run passes no environment of its own).
        let mut inner = tokio::process::Command::new(&exe);
        inner.args(&pre);
        super::process::harness_args(&mut inner, &config, launch, OsStr::new(CONTAINER_PATH));
        let std = inner.as_std();
        let args: Vec<OsString> = std.get_args().map(OsStr::to_owned).collect();
        let envs: Vec<(OsString, OsString)> = std
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        let mut cmd = tokio::process::Command::new(&self.systemd_run);
        cmd.args(run_args(
            &container_name(&launch.name),
            &launch.state_dir,
            &exe,
            &args,
            &envs,
        ));
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_sharing_a_uid_range_are_found() {
        let names = |v: &[&str]| -> Vec<AgentName> {
            v.iter().map(|n| AgentName::parse(n).unwrap()).collect()
        };
        // Find two names on one range by search (the hash decides; 16382 ranges).
        let all: Vec<AgentName> = (0..400)
            .map(|i| AgentName::parse(&format!("a{i}")).unwrap())
            .collect();
        let pair = clashes(&all);
        assert!(
            !pair.is_empty(),
            "400 names share some range (birthday bound)"
        );
        let (a, b) = pair[0].clone();
        assert_eq!(uid_base(&a), uid_base(&b));
        assert_eq!(clashes(&[a.clone(), b.clone()]), [(a.clone(), b.clone())]);
        assert!(clashes(&names(&["hm1nd", "hello", "argus", "iris"])).is_empty());
        assert!(clashes(&[a]).is_empty(), "one agent clashes with none");
    }

    fn res() -> Resources {
        Resources {
            memory_bytes: 64 << 20,
            cpu_percent: 150,
            tasks: 100,
        }
    }

    #[test]
    fn a_start_sets_the_limits_then_starts_and_a_stop_stops_the_container() {
        let steps: Vec<String> = before_start("hh-0011aabb", &res())
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            steps,
            [
                "set-property --runtime container@hh-0011aabb.service MemoryMax=67108864 \
                 MemorySwapMax=0 CPUQuota=150% TasksMax=100",
                "start container@hh-0011aabb.service",
            ]
        );
        let stop = |gone| -> Vec<String> {
            after_stop("hh-0011aabb", gone)
                .iter()
                .map(|a| a.join(" "))
                .collect()
        };
        assert_eq!(
            stop(false),
            [
                "stop container@hh-0011aabb.service",
                "reset-failed container@hh-0011aabb.service"
            ],
            "asked to stop: the harness has its TimeoutStopSec to finish"
        );
        assert_eq!(
            stop(true),
            [
                "kill --signal=SIGKILL container@hh-0011aabb.service",
                "stop container@hh-0011aabb.service",
                "reset-failed container@hh-0011aabb.service"
            ],
            "gone (a crash, a cancelled turn): nothing runs on"
        );
    }

    #[test]
    fn the_harness_runs_in_its_container_with_exactly_its_environment() {
        let a = run_args(
            "hh-0011aabb",
            Path::new("/var/lib/hyperhive/agents/hm1nd/state"),
            Path::new("/nix/store/x-hyperhive/bin/hive-agent"),
            &["--name".into(), "hm1nd".into()],
            &[
                ("PATH".into(), CONTAINER_PATH.into()),
                ("HOME".into(), "/s".into()),
            ],
        );
        let a: Vec<&str> = a.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            a,
            [
                "--machine=hh-0011aabb",
                "--pipe",
                "--wait",
                "--collect",
                "--quiet",
                "--service-type=exec",
                "--unit=hyperhive-agent",
                "--property=TimeoutStopSec=10s",
                "--working-directory=/var/lib/hyperhive/agents/hm1nd/state",
                "--setenv=PATH=/run/current-system/sw/bin",
                "--setenv=HOME=/s",
                "--",
                "/nix/store/x-hyperhive/bin/hive-agent",
                "--name",
                "hm1nd",
            ]
        );
    }

    #[test]
    fn only_what_the_container_has_is_used() {
        let store = check_in_store(Path::new("/nix/store/abc-hyperhive/bin/hive-agent"));
        assert_eq!(store, Ok(()));
        let usr = check_in_store(Path::new("/usr/local/bin/hive-agent")).unwrap_err();
        assert!(usr.contains("not in the Nix store"), "{usr}");
        let agent = Path::new("/var/lib/hyperhive/agents/a");
        assert_eq!(check_generation(&agent.join("gen/3"), agent), Ok(()));
        for outside in [
            "/var/lib/hyperhive/agents/b/gen/3",
            "/var/lib/hyperhive/agents/a/config.git",
        ] {
            let why = check_generation(Path::new(outside), agent).unwrap_err();
            assert!(why.contains("all the container sees"), "{outside}: {why}");
        }
    }

    #[test]
    fn names_fit_nixos_container_and_are_stable() {
        for n in ["hm1nd", "a", "a-very-long-agent-name-indeed"] {
            let a = AgentName::parse(n).unwrap();
            let c = container_name(&a);
            assert_eq!(c.len(), 11, "{c}");
            assert!(c.starts_with("hh-"), "{c}");
            assert_eq!(c, container_name(&a));
            let b = uid_base(&a);
            assert!((0x4000_0000..0x7ffe_0000).contains(&b), "{b:#x}");
            assert_eq!(b % 0x1_0000, 0);
        }
        // Fixed points the Nix side must reproduce (`tests/nix.rs` checks every bot).
        let hm1nd = AgentName::parse("hm1nd").unwrap();
        assert_eq!(
            container_name(&hm1nd),
            format!("hh-{}", &hex_digest("hm1nd")[..8])
        );
    }
}
