//! The `process` runtime, and what every runtime shares about the harness: its program
//! ([`harness_command`]), its arguments and scrubbed environment ([`harness_args`]: no token or
//! key of the core's leaks into it), and the files an agent may touch before it starts
//! ([`prepare_for_uid`], [`prepare_for_sandbox`]). Unsandboxed, the harness's working
//! directory and HOME are its state dir, and when the hive runs as root it runs as a uid of its
//! own that can reach only its own files (see [`own_uids`]).
//!
//! A runtime builds a command and nothing more: starting it, tying it to the core and
//! restarting it are the supervisor's (the core's `c0re/agents/supervisor.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::placement::Lacking;
use super::{AgentLaunch, Runtime};

/// The harness program: `hive-agent` beside the running `hive` (or in `bin`, the copies an
/// agent's own uid can reach; small, no Matrix client linked), else `hive agent`.
pub fn harness_command(bin: Option<&Path>) -> anyhow::Result<tokio::process::Command> {
    let (program, pre) = harness_program(bin)?;
    let mut c = tokio::process::Command::new(program);
    c.args(pre);
    Ok(c)
}

/// The harness executable and the arguments before its own (`hive agent` needs `agent`).
pub fn harness_program(bin: Option<&Path>) -> anyhow::Result<(PathBuf, Vec<&'static str>)> {
    let exe = match bin {
        Some(dir) => dir.join("hive"),
        None => std::env::current_exe().context("cannot find the hive executable")?,
    };
    let small = exe.with_file_name("hive-agent");
    Ok(if small.is_file() {
        (small, Vec::new())
    } else {
        (exe, vec!["agent"])
    })
}

/// Where the Claude Code CLI is for a harness: the copy in `bin` when there is one, else the
/// core's (absolute: the harness runs in its state dir).
fn claude_cli(launch: &AgentLaunch) -> Option<PathBuf> {
    if let Some(copy) = launch
        .bin
        .as_ref()
        .map(|b| b.join("claude"))
        .filter(|p| p.is_file())
    {
        return Some(copy);
    }
    launch.claude_code.clone()
}

/// The harness's arguments and its environment, for any runtime: the scrubbed one
/// ([`crate::proc::scrub_env`], `HOME` its state dir, `PATH` the runtime's), `RUST_LOG`, in
/// debug builds the tests' failpoint, and where the Claude Code CLI is.
pub(crate) fn harness_args(
    cmd: &mut tokio::process::Command,
    bot: &std::path::Path,
    launch: &AgentLaunch,
    path_var: &std::ffi::OsStr,
) {
    cmd.arg("--bot")
        .arg(bot)
        .arg("--name")
        .arg(launch.name.as_str())
        .arg("--socket")
        .arg(crate::wire::socket_path(&launch.socket_dir))
        .arg("--state")
        .arg(&launch.state_dir);
    crate::proc::scrub_env(cmd, path_var, &launch.state_dir).env(
        "RUST_LOG",
        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
    );
    // Debug builds: the tests' failpoints reach the harness too.
    if cfg!(debug_assertions)
        && let Some(fp) = std::env::var_os(crate::failpoint::ENV)
    {
        cmd.env(crate::failpoint::ENV, fp);
    }
    // Where the Claude Code CLI is, for `claude-code` brains (no secret in it).
    if let Some(cli) = claude_cli(launch) {
        cmd.env(crate::config::env::CLAUDE_CODE, cli);
    }
}

/// The `process` runtime: the harness runs as a plain child, with a scrubbed environment and
/// its state dir as working directory. No isolation beyond that: use `bwrap` for a sandbox.
pub struct Process;

impl Runtime for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn command(&self, launch: &AgentLaunch) -> anyhow::Result<tokio::process::Command> {
        let mut cmd = harness_command(launch.bin.as_deref())?;
        harness_args(
            &mut cmd,
            &launch.spec_dir,
            launch,
            &crate::proc::host_path(),
        );
        cmd.current_dir(&launch.state_dir);
        if let Some(uid) = launch.uid {
            // std drops supplementary groups too (setgroups(0)) before setuid.
            cmd.uid(uid).gid(uid);
        }
        // The per-process backstop, as in a sandbox without systemd; the core's memory
        // watchdog holds the whole tree to the limit itself.
        crate::proc::limit_data(
            &mut cmd,
            super::limits::data_limit(launch.resources.memory_bytes),
        );
        Ok(cmd)
    }
}

/// Whether agents can run as uids of their own here: the hive runs as root, and the data dir
/// is reachable by other uids (every directory above it can be entered by others).
pub fn own_uids(data_dir: &Path) -> Result<(), Lacking> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Lacking::new(
            "the hive does not run as root, so it cannot give agents uids of their own",
        ));
    }
    let mut at = data_dir.parent();
    while let Some(dir) = at {
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o001 == 0 => {
                return Err(Lacking::new(format!(
                    "the data dir {} is inside {} (mode {:o}), which other uids cannot enter; use a data dir outside it",
                    data_dir.display(),
                    dir.display(),
                    m.permissions().mode() & 0o777
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Lacking::new(format!(
                    "cannot inspect {}: {e}",
                    dir.display()
                )));
            }
        }
        at = dir.parent();
    }
    Ok(())
}

/// Copies (hard links where it can) of the harness's programs into `<data>/bin`, which an
/// agent's own uid can reach (the build's own directory may be private, e.g. under /root).
pub fn install_bin(data_dir: &Path, claude_code: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = data_dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let exe = std::env::current_exe().context("cannot find the hive executable")?;
    let mut programs = vec![(exe.clone(), "hive")];
    let small = exe.with_file_name("hive-agent");
    if small.is_file() {
        programs.push((small, "hive-agent"));
    }
    if let Some(cli) = claude_code.and_then(|p| std::fs::canonicalize(p).ok()) {
        programs.push((cli, "claude"));
    }
    for (src, name) in programs {
        let dest = bin.join(name);
        let same = |a: &Path, b: &Path| {
            let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
                return false;
            };
            a.len() == b.len() && a.modified().ok() == b.modified().ok()
        };
        if same(&src, &dest) {
            continue;
        }
        let tmp = bin.join(format!(".{name}.tmp"));
        // Best-effort cleanup of a leftover from an interrupted copy: usually there is none,
        // and one that cannot be removed fails the link or copy below, which is reported.
        let _ = std::fs::remove_file(&tmp);
        // A hard link is the program itself (its mode is the build's, executable by all); a
        // copy is made readable and executable by the agents' uids.
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp)
                .with_context(|| format!("cannot copy {} into {}", src.display(), bin.display()))?;
            let modified = std::fs::metadata(&src)?.modified()?;
            std::fs::File::options()
                .write(true)
                .open(&tmp)?
                .set_modified(modified)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&tmp, &dest)?;
    }
    Ok(bin)
}

/// Gives an agent's own uid exactly its own files: its state dir (owned, mode 0700, every
/// entry re-owned without following links) and its config generations (group-readable:
/// root:<uid>, 0750/0640). Its socket dir is the socket server's (root:<uid> 0750), the
/// directories above are 0711 (enter, not list); everything else of the core's stays 0600/0700.
pub fn prepare_for_uid(data_dir: &Path, launch: &AgentLaunch, uid: u32) -> anyhow::Result<()> {
    for dir in [
        data_dir.to_owned(),
        data_dir.join("agents"),
        launch
            .state_dir
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default(),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot chmod {}", dir.display()))?;
    }
    let root = launch
        .state_dir
        .parent()
        .context("state dir has no parent")?;
    if root.join("config.git").is_dir() {
        std::fs::set_permissions(
            root.join("config.git"),
            std::fs::Permissions::from_mode(0o700),
        )?;
    }
    std::fs::create_dir_all(&launch.state_dir)?;
    chown_tree(&launch.state_dir, Some(uid), uid, None)?;
    std::fs::set_permissions(&launch.state_dir, std::fs::Permissions::from_mode(0o700))?;
    let gens = root.join("gen");
    if gens.is_dir() {
        chown_tree(&gens, Some(0), uid, Some(()))?;
    }
    Ok(())
}

/// Before a sandboxed start: the agent's directory is the core's alone (0700: the harness is
/// uid 0 outside its namespace, so nothing it leaves in its state dir may be reachable by other
/// users), a state dir an agent's own uid used before is owned by root again (the sandbox's
/// harness has no capability to write another uid's files), and no setuid or setgid bit
/// survives in it. The sandbox and every process in it are gone by now (its pid namespace died
/// with it), so nothing races the walk.
pub fn prepare_for_sandbox(launch: &AgentLaunch) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if let Some(root) = launch.state_dir.parent() {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot chmod {}", root.display()))?;
    }
    if launch.state_dir.is_dir() {
        chown_tree(&launch.state_dir, Some(0), 0, None)?;
    }
    Ok(())
}

/// Owns every entry under `top` (itself included) by `uid`:`gid` without following symlinks;
/// with `group_read`, directories become 0750 and files 0640 (0750 when executable). No
/// setuid/setgid bit survives. A regular file with more than one link is left alone: it may be
/// a hard link to a file outside (a host file an agent linked in), which must not change hands.
/// Callers make sure no process of the tree's owner runs meanwhile.
fn chown_tree(
    top: &Path,
    uid: Option<u32>,
    gid: u32,
    group_read: Option<()>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(top)?;
    if meta.is_file() && meta.nlink() > 1 {
        tracing::warn!(path = %top.display(), "left a file with several links as it is");
        return Ok(());
    }
    std::os::unix::fs::lchown(top, uid, Some(gid))
        .with_context(|| format!("cannot chown {}", top.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let mode = match group_read {
        Some(()) if meta.is_dir() || mode & 0o100 != 0 => 0o750,
        Some(()) => 0o640,
        None => mode & !0o6000,
    };
    std::fs::set_permissions(top, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(top)? {
            chown_tree(&e?.path(), uid, gid, group_read)?;
        }
    }
    Ok(())
}
