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
    for top in ["/bin", "/lib", "/lib64"] {
        match std::fs::symlink_metadata(top) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(top)?;
                cmd.arg("--symlink").arg(target).arg(top);
            }
            Ok(m) if m.is_dir() => {
                cmd.args(["--ro-bind", top, top]);
            }
            _ => {}
        }
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
        let config = std::fs::canonicalize(&launch.spec_dir)
            .with_context(|| format!("no config generation at {}", launch.spec_dir.display()))?;
        let (exe, pre) = super::process::harness_program(None)?;
        let state = path_str(&launch.state_dir)?.to_owned();
        let sock = path_str(&launch.socket_dir)?.to_owned();
        let mut cmd = self.limited(launch)?;
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
        // Merged-/usr links (or the real directories on hosts without them).
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            match std::fs::symlink_metadata(top) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(top)?;
                    cmd.args(["--symlink", path_str(&target)?, top]);
                }
                Ok(m) if m.is_dir() => {
                    cmd.args(["--ro-bind", top, top]);
                }
                _ => {}
            }
        }
        for etc in ETC {
            cmd.args(["--ro-bind-try", etc, etc]);
        }
        // For `claude-code` brains: `hive` (to run `hive mcp`) and the Claude Code CLI (a
        // self-contained executable), read-only.
        let hive = std::env::current_exe().context("cannot find the hive executable")?;
        cmd.args(["--ro-bind", path_str(&hive)?, HIVE_IN_SANDBOX]);
        let cli = launch
            .claude_code
            .as_deref()
            .and_then(|p| std::fs::canonicalize(p).ok());
        if let Some(cli) = &cli {
            cmd.args(["--ro-bind", path_str(cli)?, CLAUDE_IN_SANDBOX]);
        }
        cmd.args(["--ro-bind", path_str(&config)?, CONFIG_IN_SANDBOX])
            .args(["--ro-bind", path_str(&exe)?, HARNESS_IN_SANDBOX])
            .args(["--ro-bind", &sock, &sock])
            .args(["--bind", &state, &state])
            // The sandbox's own root (a tmpfs holding the mount points) read-only too.
            .args(["--remount-ro", "/"])
            .args(["--chdir", &state])
            .args(["--", HARNESS_IN_SANDBOX])
            .args(pre);
        super::process::harness_args(
            &mut cmd,
            Path::new(CONFIG_IN_SANDBOX),
            launch,
            std::ffi::OsStr::new(SANDBOX_PATH),
        );
        if cli.is_some() {
            cmd.env(crate::config::env::CLAUDE_CODE, CLAUDE_IN_SANDBOX);
        }
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_signal_inside_the_sandbox_is_named() {
        let b = Bwrap {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            limits: super::super::limits::Mechanism::Rlimits,
        };
        let code = |c: i32| std::process::ExitStatus::from_raw(c << 8);
        assert_eq!(b.describe_exit(code(137)), "signal: 9 (in its sandbox)");
        assert_eq!(b.describe_exit(code(1)), "exit status: 1");
        assert_eq!(
            b.describe_exit(std::process::ExitStatus::from_raw(9)),
            "signal: 9 (SIGKILL)"
        );
    }
}
