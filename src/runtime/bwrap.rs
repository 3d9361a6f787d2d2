//! The `bwrap` runtime: each harness in a bubblewrap sandbox.
//!
//! The sandbox is built up from nothing rather than by hiding parts of the host: `/usr` (and
//! the merged-usr links) read-only, a handful of harmless `/etc` files, a private `/proc`,
//! `/dev` and `/tmp`, the agent's config generation read-only at `/hive/config`, the harness
//! binary at `/hive/bin`, the agent's socket **directory** (so a restarted core's new socket is
//! seen) and its state dir, the only writable place besides a private `/tmp` (the sandbox's
//! root itself is remounted read-only). All namespaces are unshared (no network:
//! only a private loopback), every capability is dropped, the sandbox dies with hive-c0re and
//! gets its own session (no terminal injection). Nothing else of the host is there: not the
//! data dir, its tokens, `/root`, `/home`, or `/etc/shadow`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{AgentLaunch, Runtime};

/// Where the agent's config generation appears inside the sandbox.
pub const CONFIG_IN_SANDBOX: &str = "/hive/config";
const HARNESS_IN_SANDBOX: &str = "/hive/bin/hive-agent";
/// `hive` beside the harness, for `hive mcp` (claude-code brains).
const HIVE_IN_SANDBOX: &str = "/hive/bin/hive";
/// The Claude Code CLI, when the core knows it (`HYPERHIVE_CLAUDE_CODE`).
const CLAUDE_IN_SANDBOX: &str = "/hive/bin/claude";
/// `PATH` inside the sandbox (only `/usr` is there).
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Read-only `/etc` entries a program may need (dynamic linking, names, time). No secrets.
const ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ssl/certs",
];

pub struct Bwrap {
    bwrap: PathBuf,
    /// How `[resources]` are enforced here (decided once, at the core's start).
    limits: super::limits::Mechanism,
}

/// Finds `bwrap`, installing Debian's `bubblewrap` with apt when it is missing and we may
/// (root, apt present), as `hive up` does for Synapse. Otherwise says how to install it.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(p) = crate::fsutil::which("bwrap") {
        return Ok(p);
    }
    let root = nix::unistd::geteuid().is_root();
    if root && crate::fsutil::which("apt-get").is_some() {
        eprintln!(
            "hive: installing bubblewrap (apt-get install bubblewrap) for the bwrap runtime…"
        );
        let apt = |args: &[&str]| {
            std::process::Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(std::process::Stdio::null())
                .status()
                .context("cannot run apt-get")
        };
        let install = ["install", "-y", "--no-install-recommends", "bubblewrap"];
        let mut status = apt(&install)?;
        if !status.success() {
            // Stale package lists: refresh once.
            apt(&["update", "-qq"])?;
            status = apt(&install)?;
        }
        if status.success()
            && let Some(p) = crate::fsutil::which("bwrap")
        {
            return Ok(p);
        }
        bail!("apt-get install bubblewrap failed ({status}); install it and try again");
    }
    bail!(
        "the bwrap runtime needs bubblewrap: install it (Debian/Ubuntu: `apt install bubblewrap`; Fedora: `dnf install bubblewrap`) or set runtime.kind = \"process\""
    )
}

impl Bwrap {
    pub fn new() -> anyhow::Result<Self> {
        let bwrap = ensure_installed()?;
        probe(&bwrap)?;
        let limits = super::limits::mechanism(super::limits::Facts::gather());
        tracing::info!(limits = limits.describe(), "sandbox resource limits");
        Ok(Self { bwrap, limits })
    }

    /// The command that starts the sandbox, with `launch`'s limits: `systemd-run --scope …
    /// -- bwrap` under systemd, else bwrap with `RLIMIT_DATA` (see `limits`).
    fn limited(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command> {
        use super::limits::{self, Mechanism};
        Ok(match self.limits {
            Mechanism::SystemdScope { user } => {
                let run = crate::fsutil::which("systemd-run").context("systemd-run is gone")?;
                // A suffix per launch: a scope of the last run not yet collected (or left by a
                // core that crashed) must not make this start fail with "unit exists".
                let launch_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let unit = format!(
                    "{}-{launch_ms}",
                    limits::unit_name(launch.name.as_str(), &launch.state_dir)
                );
                let mut cmd = tokio::process::Command::new(run);
                cmd.args(limits::scope_args(&launch.resources, user, &unit))
                    .arg(&self.bwrap);
                cmd
            }
            Mechanism::Rlimits => {
                let mut cmd = tokio::process::Command::new(&self.bwrap);
                crate::proc::limit_data(
                    &mut cmd,
                    limits::data_limit(launch.resources.memory_bytes),
                );
                cmd
            }
        })
    }
}

/// Whether a sandbox can run here, without installing anything (`hive check`).
pub fn available() -> Result<(), super::placement::Lacking> {
    let bwrap = crate::fsutil::which("bwrap").ok_or_else(|| {
        super::placement::Lacking::new(
            "bubblewrap is not installed (`hive up` installs it with apt when it runs as root)",
        )
    })?;
    Ok(probe(&bwrap)?)
}

/// Runs `true` in a sandbox built like an agent's (every namespace unshared, no capabilities):
/// a machine where that fails (no user namespaces, a container's seccomp) has no sandbox.
fn probe(bwrap: &Path) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new(bwrap);
    cmd.args([
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
    ]);
    for (top, kind) in tops(&["/bin", "/lib", "/lib64"])? {
        match kind {
            Top::Link(target) => cmd.arg("--symlink").arg(target).arg(top),
            Top::Dir => cmd.args(["--ro-bind", top, top]),
        };
    }
    let out = cmd
        .args(["--", "/usr/bin/env", "true"])
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", bwrap.display()))?;
    if !out.status.success() {
        bail!(
            "bubblewrap cannot make a sandbox here ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// What one of the host's top-level directories is: a merged-/usr link, or a real directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Top {
    Link(PathBuf),
    Dir,
}

/// Which of `names` the host has, and as what (absent ones are left out).
fn tops(names: &[&'static str]) -> anyhow::Result<Vec<(&'static str, Top)>> {
    let mut found = Vec::new();
    for &top in names {
        match std::fs::symlink_metadata(top) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(top)
                    .with_context(|| format!("cannot read the link {top}"))?;
                found.push((top, Top::Link(target)));
            }
            Ok(m) if m.is_dir() => found.push((top, Top::Dir)),
            _ => {}
        }
    }
    Ok(found)
}

/// What one agent's sandbox is built from, read from the machine ([`Host::gather`], the only
/// effects); [`sandbox`] builds the arguments from it and the launch alone.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The merged-/usr links (or the real directories on hosts without them).
    pub tops: Vec<(&'static str, Top)>,
    /// The agent's config generation, resolved (it is bound by its real path).
    pub config: PathBuf,
    /// The harness executable and the arguments before its own.
    pub harness: PathBuf,
    pub pre: Vec<&'static str>,
    /// The running `hive` (for `hive mcp`).
    pub hive: PathBuf,
    /// The Claude Code CLI, resolved, when the core knows one and it is there.
    pub claude: Option<PathBuf>,
}

impl Host {
    pub fn gather(launch: &AgentLaunch) -> anyhow::Result<Self> {
        let config = std::fs::canonicalize(&launch.spec_dir)
            .with_context(|| format!("no config generation at {}", launch.spec_dir.display()))?;
        let (harness, pre) = super::process::harness_program(None)?;
        Ok(Self {
            tops: tops(&["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"])?,
            config,
            harness,
            pre,
            hive: std::env::current_exe().context("cannot find the hive executable")?,
            claude: launch
                .claude_code
                .as_deref()
                .and_then(|p| std::fs::canonicalize(p).ok()),
        })
    }
}

/// A path given to bwrap: UTF-8, absolute, and plain (no `.` or `..`: what is bound is the
/// path named, never a place it would resolve to elsewhere).
fn plain(p: &Path) -> anyhow::Result<&str> {
    let s = path_str(p)?;
    if !p.is_absolute() {
        bail!("{s} is not an absolute path");
    }
    // By its text: `Path::components` drops a `.` inside a path.
    if s.split('/').any(|c| c == "." || c == "..") {
        bail!("{s} is not a plain path (it holds . or ..)");
    }
    Ok(s)
}

/// The sandbox of `launch` built from `host`, appended to `cmd` (bwrap, or the limits' wrapper
/// ending in bwrap): its arguments, the harness's, and its environment (the allow-listed one of
/// [`super::process::harness_args`], with the sandbox's `PATH` and CLI). A decision over data:
/// nothing here reads the machine.
///
/// Rules: every namespace unshared (no network: only a private loopback), every capability
/// dropped, dies with the core, a session of its own; `/usr` and the merged-usr links
/// read-only, the [`ETC`] files if present, a private `/proc`, `/dev` and `/tmp`; read-only:
/// `hive`, the harness, the CLI (when known), the config generation at [`CONFIG_IN_SANDBOX`]
/// and the socket directory; read-write: the state dir, and nothing else; the root read-only.
/// No other path of the host, so nothing of the data dir but this agent's own.
pub(crate) fn sandbox(
    cmd: &mut tokio::process::Command,
    launch: &AgentLaunch,
    host: &Host,
) -> anyhow::Result<()> {
    let state = plain(&launch.state_dir)?;
    let sock = plain(&launch.socket_dir)?;
    cmd.args([
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        &format!("hive-{}", launch.name),
        "--ro-bind",
        "/usr",
        "/usr",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]);
    for (top, kind) in &host.tops {
        match kind {
            Top::Link(target) => cmd.args(["--symlink", path_str(target)?, top]),
            Top::Dir => cmd.args(["--ro-bind", top, top]),
        };
    }
    for etc in ETC {
        cmd.args(["--ro-bind-try", etc, etc]);
    }
    // For `claude-code` brains: `hive` (to run `hive mcp`) and the Claude Code CLI (a
    // self-contained executable), read-only.
    cmd.args(["--ro-bind", plain(&host.hive)?, HIVE_IN_SANDBOX]);
    if let Some(cli) = &host.claude {
        cmd.args(["--ro-bind", plain(cli)?, CLAUDE_IN_SANDBOX]);
    }
    cmd.args(["--ro-bind", plain(&host.config)?, CONFIG_IN_SANDBOX])
        .args(["--ro-bind", plain(&host.harness)?, HARNESS_IN_SANDBOX])
        .args(["--ro-bind", sock, sock])
        .args(["--bind", state, state])
        // The sandbox's own root (a tmpfs holding the mount points) read-only too.
        .args(["--remount-ro", "/"])
        .args(["--chdir", state])
        .args(["--", HARNESS_IN_SANDBOX])
        .args(&host.pre);
    super::process::harness_args(
        cmd,
        Path::new(CONFIG_IN_SANDBOX),
        launch,
        std::ffi::OsStr::new(SANDBOX_PATH),
    );
    // The CLI by its path inside, or none (a host path would name nothing there).
    if host.claude.is_some() {
        cmd.env(crate::config::env::CLAUDE_CODE, CLAUDE_IN_SANDBOX);
    } else {
        cmd.env_remove(crate::config::env::CLAUDE_CODE);
    }
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

impl Runtime for Bwrap {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    /// bwrap exits with 128 + N when its child was killed by signal N.
    fn describe_exit(&self, status: std::process::ExitStatus) -> String {
        match status.code() {
            Some(c) if c > 128 && c < 128 + 65 => {
                format!("signal: {} (in its sandbox)", c - 128)
            }
            _ => status.to_string(),
        }
    }

    fn command(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command> {
        let host = Host::gather(launch)?;
        let mut cmd = self.limited(launch)?;
        sandbox(&mut cmd, launch, &host)?;
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests;
