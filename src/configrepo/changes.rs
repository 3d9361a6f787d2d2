//! A proposal's changes against the applied config, file by file: what an operator reviews.

use anyhow::{Context, bail};

use super::git::{DIFF, EMPTY_TREE, git};
use super::{ConfigRepo, parse_sha};

/// How a file differs between the applied config and a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// One file of a proposal's diff against the applied config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub status: ChangeKind,
    /// Lines added and removed.
    pub added: usize,
    pub removed: usize,
    /// This file's unified diff, hunks only (from the first `@@`; no `diff --git`/`index`/
    /// `---`/`+++` headers). Empty when only the mode changed or the file is empty.
    pub patch: String,
}

/// The order a request shows files in: `agent.toml` first, then the rest by path.
pub(super) fn request_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "agent.toml", a).cmp(&(b != "agent.toml", b))
}

/// Parses `git diff --name-status -z` (`<status>\0<path>\0`…) into (path, kind).
pub(super) fn parse_name_status(out: &[u8]) -> anyhow::Result<Vec<(String, ChangeKind)>> {
    let mut fields = out.split(|b| *b == 0);
    let mut files = Vec::new();
    while let Some(status) = fields.next().filter(|s| !s.is_empty()) {
        let path = fields
            .next()
            .filter(|p| !p.is_empty())
            .context("unexpected git diff --name-status output: a status without a path")?;
        let path = String::from_utf8(path.to_vec()).context("a path is not UTF-8")?;
        let kind = match status.first() {
            Some(b'A') => ChangeKind::Added,
            Some(b'D') => ChangeKind::Deleted,
            Some(b'M' | b'T') => ChangeKind::Modified,
            _ => bail!(
                "unexpected git diff status {:?} for {path}",
                String::from_utf8_lossy(status)
            ),
        };
        files.push((path, kind));
    }
    Ok(files)
}

/// Lines added and removed; `None` for a binary file.
pub(super) type LineCounts = Option<(usize, usize)>;

/// Parses `git diff --numstat -z` (`<added>\t<removed>\t<path>\0`…); binary files (`-`) get
/// `None`.
pub(super) fn parse_numstat(out: &[u8]) -> anyhow::Result<Vec<(String, LineCounts)>> {
    let mut files = Vec::new();
    for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let entry = std::str::from_utf8(entry).context("a path is not UTF-8")?;
        let mut parts = entry.splitn(3, '\t');
        let (Some(added), Some(removed), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("unexpected git diff --numstat output {entry:?}");
        };
        let counts = match (added.parse(), removed.parse()) {
            (Ok(a), Ok(r)) => Some((a, r)),
            _ if added == "-" && removed == "-" => None,
            _ => bail!("unexpected git diff --numstat output {entry:?}"),
        };
        files.push((path.to_owned(), counts));
    }
    Ok(files)
}

/// The hunks of a one-file `git diff`: everything from the first `@@` line on.
pub(super) fn hunks(patch: &str) -> &str {
    if patch.starts_with("@@") {
        return patch;
    }
    patch.find("\n@@").map_or("", |i| &patch[i + 1..])
}

impl ConfigRepo {
    /// The diff's base: the applied commit, or the empty tree when nothing is applied (a spawn:
    /// every file of the proposal is new).
    fn base(&self) -> anyhow::Result<String> {
        Ok(self.applied()?.unwrap_or_else(|| EMPTY_TREE.to_owned()))
    }

    /// `git diff` from the applied commit (or the empty tree) to `sha`, both in the core's repo.
    pub fn diff(&self, sha: &str) -> anyhow::Result<String> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        let base = self.base()?;
        let mut args = vec!["diff"];
        args.extend(DIFF);
        args.extend([base.as_str(), sha.as_str()]);
        let out = git(&self.dirs.repo(), &args, None)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// What `sha` changes against the applied commit (or the empty tree, for a spawn), file by
    /// file: `agent.toml` first, then the rest by path. A binary file is refused (a reviewer
    /// could not read it), except one being deleted.
    pub fn changes(&self, sha: &str) -> anyhow::Result<Vec<FileChange>> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        let repo = self.dirs.repo();
        let base = self.base()?;
        let run = |extra: &[&str], paths: &[&str]| {
            let mut args = vec!["diff"];
            args.extend(DIFF);
            args.extend(extra);
            args.extend([base.as_str(), sha.as_str(), "--"]);
            args.extend(paths);
            git(&repo, &args, None)
        };
        let kinds = parse_name_status(&run(&["--name-status", "-z"], &[])?)?;
        let counts: std::collections::HashMap<String, LineCounts> =
            parse_numstat(&run(&["--numstat", "-z"], &[])?)?
                .into_iter()
                .collect();
        let mut changes = Vec::with_capacity(kinds.len());
        for (path, status) in kinds {
            let (added, removed, patch) = match counts.get(&path) {
                Some(Some((added, removed))) => {
                    // git calls text what has no NUL; a reviewer also needs it to be UTF-8.
                    let text = String::from_utf8(run(&[], &[path.as_str()])?)
                        .ok()
                        .filter(|t| !t.contains('\0'))
                        .with_context(|| {
                            format!("{path} is a binary file; config files must be text")
                        })?;
                    (*added, *removed, hunks(&text).to_owned())
                }
                Some(None) if status == ChangeKind::Deleted => (0, 0, String::new()),
                Some(None) => bail!("{path} is a binary file; config files must be text"),
                None => bail!("git diff --numstat did not list {path}"),
            };
            changes.push(FileChange {
                path,
                status,
                added,
                removed,
                patch,
            });
        }
        changes.sort_by(|a, b| request_order(&a.path, &b.path));
        Ok(changes)
    }
}
