//! The one way this module runs git: on the core's bare repository only, with a scrubbed
//! environment and every repository-controlled extension point switched off.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

/// The empty tree (SHA-1): the base of a spawn's diff, and the attribute source, so no
/// `.gitattributes` in any commit can pick a diff driver or mark a file binary.
pub(super) const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
/// The branch the proposed side commits to.
pub(super) const PROPOSED: &str = "refs/heads/proposed";
/// The branch the agent runs.
pub(super) const APPLIED: &str = "refs/heads/applied";
/// Options of every diff: no drivers, no textconv, no renames, no colour.
pub(super) const DIFF: [&str; 5] = [
    "--no-color",
    "--no-textconv",
    "--no-ext-diff",
    "--no-renames",
    "--full-index",
];

/// Runs git on the bare repository `repo` (and nothing else: `GIT_DIR` is set, so no
/// discovery) with a scrubbed environment; returns stdout.
pub(super) fn git(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    git_indexed(repo, None, args, stdin)
}

/// [`git`] with `GIT_INDEX_FILE` set: the temporary index a commit's tree is built in.
pub(super) fn git_indexed(
    repo: &Path,
    index: Option<&Path>,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> anyhow::Result<Vec<u8>> {
    let mut cmd = Command::new("git");
    cmd.current_dir(repo)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("LANG", "C")
        .env("HOME", repo)
        .env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "hive-c0re")
        .env("GIT_AUTHOR_EMAIL", "hive-c0re@localhost")
        .env("GIT_COMMITTER_NAME", "hive-c0re")
        .env("GIT_COMMITTER_EMAIL", "hive-c0re@localhost");
    if let Some(index) = index {
        cmd.env("GIT_INDEX_FILE", index);
    }
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "core.attributesFile=/dev/null",
        "-c",
        &format!("attr.tree={EMPTY_TREE}"),
        "-c",
        "commit.gpgSign=false",
        "-c",
        "protocol.allow=never",
        "-c",
        "protocol.file.allow=always",
        "-c",
        "init.defaultBranch=main",
    ])
    .args(args)
    .stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run git (is it installed?)")?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin was piped")
            .write_all(input)?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

pub(super) fn git_str(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&git(repo, args, None)?)
        .trim()
        .to_owned())
}

/// [`git_str`] with `input` on stdin.
pub(super) fn git_str_in(repo: &Path, args: &[&str], input: &[u8]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&git(repo, args, Some(input))?)
        .trim()
        .to_owned())
}

/// A temporary index file inside the repository, removed when dropped.
pub(super) struct TempIndex(pub(super) PathBuf);

impl TempIndex {
    pub(super) fn new(repo: &Path) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Self(repo.join(format!("hive-index.{}.{n}", std::process::id())))
    }
}

impl Drop for TempIndex {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove a temporary git index");
        }
    }
}
