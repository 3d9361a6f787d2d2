//! Versioned agent config: one git repository per agent, owned by hive-c0re.
//!
//! ```text
//! <data>/agents/<name>/
//!   config.git/    bare, the core's own: `proposed` branch (what managers and `hive config
//!                  propose` commit to), `applied` branch, `proposal/<id>` and `deploy/<n>` tags
//!   gen/<n>/       the files of deploy n, rendered from the object store (never a checkout)
//!   gen/<n>.sha    the commit deploy n was rendered from
//!   current        symlink to gen/<n>: what the agent runs; switched atomically
//! ```
//!
//! Only the core moves `applied`, fast-forward only, to a sha an operator approved. Commits on
//! the proposed side are built by the core with git plumbing inside `config.git` (blobs from
//! `hash-object`, a tree from a temporary index, `commit-tree`, a compare-and-swap
//! `update-ref`): there is no work tree and no other repository whose config, attributes or
//! hooks git could read. At request time the commit is tagged `proposal/<id>`, so moving the
//! proposed branch afterwards changes nothing about what gets applied. Files are read from git
//! objects, never through a filesystem: a symlink in a proposal is refused, not followed, and so
//! is a binary file.
//!
//! A data dir from before the `proposed` branch has a `proposed/` work tree: it is never read;
//! the branch starts at `applied`.
//!
//! git runs as a child process with a scrubbed environment, no system or global config, hooks,
//! fsmonitor, in-tree attributes and replace refs off, and only the `file` transport; every diff
//! runs with `--no-textconv --no-ext-diff`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::agent_spec::{AgentName, AgentSpec};

mod changes;
mod git;
mod rollback;
mod unapplied;

pub use changes::{ChangeKind, FileChange};
use git::{APPLIED, PROPOSED, TempIndex, git, git_indexed, git_str, git_str_in};
pub use rollback::{OnApplied, abandoned_ref};
pub use unapplied::Unapplied;

#[cfg(test)]
mod tests;

/// Largest file accepted in a config commit.
pub const MAX_FILE: u64 = 1 << 20;
/// Longest path in a config, and longest name in it (what a filesystem takes).
const MAX_PATH: usize = 1024;
const MAX_NAME: usize = 255;
/// Most files accepted in a config commit.
const MAX_FILES: usize = 64;

/// Every path of one agent under the data dir. Built only from a validated [`AgentName`].
#[derive(Debug, Clone)]
pub struct AgentDirs {
    pub root: PathBuf,
}

impl AgentDirs {
    pub fn new(data_dir: &Path, name: &AgentName) -> Self {
        Self {
            root: data_dir.join("agents").join(name.as_str()),
        }
    }
    pub fn repo(&self) -> PathBuf {
        self.root.join("config.git")
    }
    pub fn gens(&self) -> PathBuf {
        self.root.join("gen")
    }
    pub fn current(&self) -> PathBuf {
        self.root.join("current")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
}

/// Why a config commit is refused, or could not be read. Every variant but [`Self::Git`] is
/// about the commit itself (told to whoever named it); `Git` is the repository failing.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "{0:?} is not a full commit sha (40 lowercase hex digits); name commits by sha, never by branch or tag"
    )]
    NotASha(String),
    #[error("{path:?}: {why}")]
    BadPath { path: String, why: String },
    #[error("a path is not UTF-8")]
    PathNotUtf8,
    #[error("{0} is a symlink; symlinks are refused")]
    Symlink(String),
    #[error("{0} is a submodule; refused")]
    Submodule(String),
    #[error("{path}: unsupported entry ({mode} {kind})")]
    Unsupported {
        path: String,
        mode: String,
        kind: String,
    },
    #[error("{0} is larger than {MAX_FILE} bytes")]
    TooLarge(String),
    #[error("more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("{0} is a binary file; config files must be text")]
    Binary(String),
    #[error("the commit has no agent.toml")]
    NoAgentToml,
    #[error("agent.toml is not UTF-8")]
    AgentTomlNotUtf8,
    /// `agent.toml` does not validate: each error as `key: message`, joined by `; `.
    #[error("{0}")]
    Spec(String),
    #[error("unexpected git ls-tree output")]
    Listing,
    #[error("{0}")]
    Git(String),
}

impl CommitError {
    /// Whether the commit is at fault (as opposed to the repository).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Git(_))
    }
}

/// A full commit id: 40 lowercase hex digits. Requests name commits this way, never by a branch
/// or tag name.
pub fn parse_sha(s: &str) -> Result<String, CommitError> {
    if s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_owned())
    } else {
        Err(CommitError::NotASha(s.to_owned()))
    }
}

/// One file of a config commit, read from the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Relative path, each component checked.
    pub path: String,
    pub executable: bool,
    pub content: Vec<u8>,
}

/// Checks a path from a git tree: relative, no `.`/`..`/empty components, printable.
pub fn check_path(path: &str) -> Result<(), CommitError> {
    let bad = |why: String| CommitError::BadPath {
        path: path.to_owned(),
        why,
    };
    if path.is_empty() || path.starts_with('/') {
        return Err(bad("not a relative path".into()));
    }
    if path.len() > MAX_PATH {
        return Err(bad(format!("longer than {MAX_PATH} bytes")));
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.starts_with(".git") {
            return Err(bad(format!("forbidden path component {c:?}")));
        }
        if c.len() > MAX_NAME {
            return Err(bad(format!("a name longer than {MAX_NAME} bytes")));
        }
        if c.chars().any(|ch| ch.is_control()) {
            return Err(bad("control character in path".into()));
        }
    }
    Ok(())
}

/// Whether `content` is not text a reviewer can read: not UTF-8, or holding a NUL.
pub fn is_binary(content: &[u8]) -> bool {
    content.contains(&0) || std::str::from_utf8(content).is_err()
}

pub struct ConfigRepo {
    pub name: AgentName,
    pub dirs: AgentDirs,
}

impl ConfigRepo {
    pub fn new(data_dir: &Path, name: &AgentName) -> Self {
        Self {
            name: name.clone(),
            dirs: AgentDirs::new(data_dir, name),
        }
    }

    /// Whether the agent's config is versioned already (it has an applied commit).
    pub fn exists(&self) -> bool {
        self.applied().ok().flatten().is_some()
    }

    /// The applied commit, if any.
    pub fn applied(&self) -> anyhow::Result<Option<String>> {
        self.resolve(APPLIED)
    }

    /// The commit `refname` points at, if the repository and the ref exist.
    fn resolve(&self, refname: &str) -> anyhow::Result<Option<String>> {
        if !self.dirs.repo().join("HEAD").is_file() {
            return Ok(None);
        }
        match git_str(
            &self.dirs.repo(),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{refname}^{{commit}}"),
            ],
        ) {
            Ok(s) if !s.is_empty() => Ok(Some(s)),
            _ => Ok(None),
        }
    }

    /// The proposed side's tip: the `proposed` branch, else the applied commit (a data dir from
    /// before the branch, or an agent never proposed to), else none.
    fn proposed_tip(&self) -> anyhow::Result<Option<String>> {
        match self.resolve(PROPOSED)? {
            Some(sha) => Ok(Some(sha)),
            None => self.applied(),
        }
    }

    fn init(&self) -> anyhow::Result<()> {
        // Created private; an existing one keeps its mode (0711 while the agent has a uid of
        // its own, which must reach its sockets and state through it).
        if !self.dirs.root.is_dir() {
            crate::fsutil::private_dir(&self.dirs.root)?;
        }
        let repo = self.dirs.repo();
        if !repo.join("HEAD").is_file() {
            crate::fsutil::private_dir(&repo)?;
            git(&repo, &["init", "--quiet", "--bare"], None)?;
            git(&repo, &["symbolic-ref", "HEAD", APPLIED], None)?;
        }
        Ok(())
    }

    /// Versions the agent for the first time from `bot_dir` (its directory in `bots/`): the
    /// files become the first proposed commit, applied as deploy 1. Returns the sha.
    pub fn seed(&self, bot_dir: &Path) -> anyhow::Result<String> {
        self.init()?;
        let mut files = Vec::new();
        collect_files(bot_dir, bot_dir, &mut files)?;
        let sha = self.commit_proposed(&files, &format!("seed {} from bots/", self.name))?;
        self.snapshot(&sha, "seed")?;
        let tree = self.read_commit(&sha).map_err(|e| anyhow::anyhow!(e))?;
        self.parse_spec(&tree).map_err(|e| anyhow::anyhow!(e))?;
        self.deploy(&sha, 1, &tree)?;
        Ok(sha)
    }

    /// Commits `files` (replacing those paths) on top of the proposed side's tip and moves the
    /// `proposed` branch to it; returns the new commit's sha. Used by `hive config propose`, the
    /// core (spawns) and at seeding. Plumbing only, in the core's repo: the tree is the parent's
    /// with the given paths replaced, built in a temporary index. Fails, changing nothing, if
    /// the branch moved meanwhile.
    pub fn commit_proposed(&self, files: &[ConfigFile], message: &str) -> anyhow::Result<String> {
        let (sha, old, _) = self.make_proposed_commit(files, message)?;
        self.move_proposed(&sha, old.as_deref())?;
        Ok(sha)
    }

    /// [`Self::commit_proposed`], with the whole new tree read back from the object store
    /// ([`Self::read_commit`]: counts, paths, text, an `agent.toml`) and given to `check` before
    /// the branch moves: what is checked is exactly what is committed, and nothing moves unless
    /// both pass. The new commit is `(sha, parent)`.
    pub fn commit_proposed_checked<E>(
        &self,
        files: &[ConfigFile],
        message: &str,
        check: impl FnOnce(&[ConfigFile], &[ConfigFile]) -> Result<(), E>,
    ) -> Result<String, E>
    where
        E: From<CommitError> + From<anyhow::Error>,
    {
        let (sha, old, parent) = self.make_proposed_commit(files, message)?;
        let tree = self.read_commit_any(&sha)?;
        let before = match &parent {
            Some(p) => self.read_commit_any(p)?,
            None => Vec::new(),
        };
        check(&before, &tree)?;
        self.move_proposed(&sha, old.as_deref())?;
        Ok(sha)
    }

    /// Moves the `proposed` branch to `sha` if it is still at `old` (none: must not exist yet).
    fn move_proposed(&self, sha: &str, old: Option<&str>) -> anyhow::Result<()> {
        git(
            &self.dirs.repo(),
            &[
                "update-ref",
                "-m",
                "commit_proposed",
                PROPOSED,
                sha,
                old.unwrap_or(""),
            ],
            None,
        )
        .with_context(|| format!("{}'s proposed branch moved meanwhile", self.name))?;
        Ok(())
    }

    /// A commit's files as [`Self::read_commit`] reads them, without requiring an `agent.toml`
    /// (the checks of [`Self::commit_proposed_checked`] decide that).
    fn read_commit_any(&self, sha: &str) -> Result<Vec<ConfigFile>, CommitError> {
        match self.read_commit(sha) {
            Err(CommitError::NoAgentToml) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The commit object for [`Self::commit_proposed`], the branch untouched: its sha, the
    /// branch's value it was built on (for the swap), and its parent.
    fn make_proposed_commit(
        &self,
        files: &[ConfigFile],
        message: &str,
    ) -> anyhow::Result<(String, Option<String>, Option<String>)> {
        for f in files {
            check_path(&f.path).map_err(|e| anyhow::anyhow!(e))?;
            if f.content.len() as u64 > MAX_FILE {
                bail!("{} is larger than {MAX_FILE} bytes", f.path);
            }
        }
        self.init()?;
        let repo = self.dirs.repo();
        let old = self.resolve(PROPOSED)?;
        let parent = match &old {
            Some(sha) => Some(sha.clone()),
            None => self.applied()?,
        };
        let index = TempIndex::new(&repo);
        let in_index = |args: &[&str]| git_indexed(&repo, Some(&index.0), args, None);
        match &parent {
            Some(p) => in_index(&["read-tree", &format!("{p}^{{tree}}")])?,
            None => in_index(&["read-tree", "--empty"])?,
        };
        for f in files {
            let oid = git_str_in(
                &repo,
                &["hash-object", "-w", "--no-filters", "--stdin"],
                &f.content,
            )?;
            let mode = if f.executable { "100755" } else { "100644" };
            in_index(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("{mode},{oid},{}", f.path),
            ])
            .with_context(|| format!("cannot add {} to the proposed tree", f.path))?;
        }
        let tree = String::from_utf8_lossy(&in_index(&["write-tree"])?)
            .trim()
            .to_owned();
        let mut args = vec!["commit-tree", "--no-gpg-sign", tree.as_str()];
        if let Some(p) = &parent {
            args.extend(["-p", p.as_str()]);
        }
        let sha = git_str_in(&repo, &args, message.as_bytes())?;
        Ok((sha, old, parent))
    }

    /// Moves the `proposed` branch to commit `sha` (already in the core's repo), e.g. to base
    /// the next proposal on something other than the last one.
    pub fn reset_proposed(&self, sha: &str) -> anyhow::Result<()> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        self.init()?;
        self.require_commit(&sha)?;
        git(
            &self.dirs.repo(),
            &["update-ref", "-m", "reset_proposed", PROPOSED, &sha],
            None,
        )?;
        Ok(())
    }

    /// Fails unless `sha` names a commit in the core's repo.
    fn require_commit(&self, sha: &str) -> anyhow::Result<()> {
        let kind = git_str(&self.dirs.repo(), &["cat-file", "-t", sha])
            .with_context(|| format!("commit {sha} is not in {}'s config repo", self.name))?;
        if kind != "commit" {
            bail!("{sha} is a {kind}, not a commit");
        }
        Ok(())
    }

    /// Tags commit `sha` `proposal/<id>`. The commit must be on the proposed side: the
    /// `proposed` branch or one of its ancestors. From then on the proposal is immune to
    /// anything done to the branch. Reads no other repository.
    pub fn snapshot(&self, sha: &str, id: &str) -> anyhow::Result<()> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            bail!("{id:?} is not a proposal id");
        }
        self.init()?;
        self.require_commit(&sha)?;
        let tip = self
            .proposed_tip()?
            .with_context(|| format!("{} has no proposed commits", self.name))?;
        if tip != sha
            && git(
                &self.dirs.repo(),
                &["merge-base", "--is-ancestor", &sha, &tip],
                None,
            )
            .is_err()
        {
            bail!("commit {sha} is not on {}'s proposed side", self.name);
        }
        git(
            &self.dirs.repo(),
            &["update-ref", &format!("refs/tags/proposal/{id}"), &sha],
            None,
        )?;
        Ok(())
    }

    /// The files of commit `sha` (which must be in the core's repo), checked: regular files only
    /// (no symlinks, no submodules), text only (UTF-8, no NUL), safe paths, bounded sizes, an
    /// `agent.toml`.
    pub fn read_commit(&self, sha: &str) -> Result<Vec<ConfigFile>, CommitError> {
        let sha = parse_sha(sha)?;
        let git_failed = |e: anyhow::Error| CommitError::Git(format!("{e:#}"));
        let listing = git(
            &self.dirs.repo(),
            &["ls-tree", "-r", "-z", "--full-tree", "-l", &sha],
            None,
        )
        .map_err(git_failed)?;
        let mut files = Vec::new();
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = std::str::from_utf8(entry).map_err(|_| CommitError::PathNotUtf8)?;
            // "<mode> <type> <oid> <size>\t<path>"
            let (meta, path) = entry.split_once('\t').ok_or(CommitError::Listing)?;
            let parts: Vec<&str> = meta.split_whitespace().collect();
            let [mode, kind, oid, size] = parts[..] else {
                return Err(CommitError::Listing);
            };
            check_path(path)?;
            match (mode, kind) {
                ("100644" | "100755", "blob") => {}
                ("120000", _) => return Err(CommitError::Symlink(path.to_owned())),
                ("160000", _) => return Err(CommitError::Submodule(path.to_owned())),
                _ => {
                    return Err(CommitError::Unsupported {
                        path: path.to_owned(),
                        mode: mode.to_owned(),
                        kind: kind.to_owned(),
                    });
                }
            }
            let size: u64 = size.parse().map_err(|_| CommitError::Listing)?;
            if size > MAX_FILE {
                return Err(CommitError::TooLarge(path.to_owned()));
            }
            if files.len() >= MAX_FILES {
                return Err(CommitError::TooManyFiles);
            }
            let content =
                git(&self.dirs.repo(), &["cat-file", "blob", oid], None).map_err(git_failed)?;
            if is_binary(&content) {
                return Err(CommitError::Binary(path.to_owned()));
            }
            files.push(ConfigFile {
                path: path.to_owned(),
                executable: mode == "100755",
                content,
            });
        }
        if !files.iter().any(|f| f.path == "agent.toml") {
            return Err(CommitError::NoAgentToml);
        }
        Ok(files)
    }

    /// Validates the commit's `agent.toml` (and reads its prompt) as the agent's spec.
    pub fn parse_spec(&self, files: &[ConfigFile]) -> Result<AgentSpec, CommitError> {
        let toml = files
            .iter()
            .find(|f| f.path == "agent.toml")
            .ok_or(CommitError::NoAgentToml)?;
        let text = std::str::from_utf8(&toml.content).map_err(|_| CommitError::AgentTomlNotUtf8)?;
        let prompt = files
            .iter()
            .find(|f| f.path == "prompt.md")
            .map(|f| String::from_utf8_lossy(&f.content).into_owned());
        let dir = self.dirs.current();
        AgentSpec::parse(self.name.clone(), &dir, &dir.join("agent.toml"), text)
            .map(|mut s| {
                s.prompt = prompt;
                s
            })
            .map_err(|errs| {
                CommitError::Spec(
                    errs.iter()
                        .map(|e| format!("{}: {}", e.key, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })
    }

    /// Whether `sha` fast-forwards the applied commit.
    pub fn is_fast_forward(&self, sha: &str) -> anyhow::Result<bool> {
        let Some(base) = self.applied()? else {
            return Ok(true);
        };
        if base == sha {
            return Ok(true);
        }
        Ok(git(
            &self.dirs.repo(),
            &["merge-base", "--is-ancestor", &base, sha],
            None,
        )
        .is_ok())
    }

    /// Applies `sha` as deploy `n`: renders generation `n`, moves `applied` (fast-forward only;
    /// the commit point), tags `deploy/<n>`, switches `current`. Idempotent: re-running it after
    /// a crash finishes the same deploy.
    pub fn deploy(&self, sha: &str, n: u64, files: &[ConfigFile]) -> anyhow::Result<()> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        let gen_dir = self.render(n, files)?;
        std::fs::write(self.dirs.gens().join(format!("{n}.sha")), &sha)?;
        let applied = self.applied()?;
        if applied.as_deref() != Some(sha.as_str()) {
            if !self.is_fast_forward(&sha)? {
                bail!(
                    "{sha} does not fast-forward the applied config ({})",
                    applied.as_deref().unwrap_or("none")
                );
            }
            let mut args = vec!["update-ref", "refs/heads/applied", sha.as_str()];
            if let Some(old) = applied.as_deref() {
                args.push(old);
            }
            git(&self.dirs.repo(), &args, None)?;
        }
        git(
            &self.dirs.repo(),
            &["tag", "--force", &format!("deploy/{n}"), &sha],
            None,
        )?;
        self.switch(&gen_dir)?;
        Ok(())
    }

    /// Writes generation `n`'s files under `gen/<n>` (replacing a partial one).
    fn render(&self, n: u64, files: &[ConfigFile]) -> anyhow::Result<PathBuf> {
        let gens = self.dirs.gens();
        crate::fsutil::private_dir(&gens)?;
        let dest = gens.join(n.to_string());
        let tmp = gens.join(format!(".{n}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        for f in files {
            check_path(&f.path).map_err(|e| anyhow::anyhow!(e))?;
            let p = tmp.join(&f.path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(
                &mut opts,
                if f.executable { 0o755 } else { 0o644 },
            );
            opts.open(&p)?.write_all(&f.content)?;
        }
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&tmp, &dest)?;
        Ok(dest)
    }

    /// Points `current` at `gen_dir`, atomically (a new symlink renamed over the old one).
    fn switch(&self, gen_dir: &Path) -> anyhow::Result<()> {
        let rel = gen_dir
            .strip_prefix(&self.dirs.root)
            .context("generation outside the agent's directory")?;
        let tmp = self.dirs.root.join(".current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(rel, &tmp)?;
        std::fs::rename(&tmp, self.dirs.current())?;
        Ok(())
    }

    /// The proposed side's tip (the `proposed` branch, else the applied commit).
    pub fn proposed(&self) -> anyhow::Result<Option<String>> {
        self.proposed_tip()
    }

    /// Every deploy, oldest first: its number and the commit its `deploy/<n>` tag names.
    pub fn deploys(&self) -> anyhow::Result<Vec<(u64, String)>> {
        if !self.exists() {
            return Ok(Vec::new());
        }
        let out = git::git_str(
            &self.dirs.repo(),
            &[
                "for-each-ref",
                "--format=%(refname:strip=2) %(objectname)",
                "refs/tags/deploy",
            ],
        )?;
        let mut deploys: Vec<(u64, String)> = out
            .lines()
            .filter_map(|l| {
                let (tag, sha) = l.split_once(' ')?;
                Some((tag.strip_prefix("deploy/")?.parse().ok()?, sha.to_owned()))
            })
            .collect();
        deploys.sort();
        Ok(deploys)
    }

    /// The deploy number and sha `current` points at.
    pub fn current(&self) -> Option<(u64, String)> {
        let target = std::fs::read_link(self.dirs.current()).ok()?;
        let n: u64 = target.file_name()?.to_str()?.parse().ok()?;
        let sha = std::fs::read_to_string(self.dirs.gens().join(format!("{n}.sha"))).ok()?;
        Some((n, sha.trim().to_owned()))
    }

    /// The spec the agent runs now (from `current`).
    pub fn load_current(&self) -> Result<AgentSpec, Vec<crate::agent_spec::SpecError>> {
        AgentSpec::load_as(self.name.clone(), &self.dirs.current())
    }
}

/// Threads [`load_versioned`] versions the bots on.
const VERSIONING_THREADS: usize = 4;

/// Versions `bot` from its `bots/` directory the first time it is seen; afterwards returns the
/// note to give when its files differ from its applied config.
fn version_bot(data_dir: &Path, bot: &AgentSpec) -> anyhow::Result<Option<String>> {
    let repo = ConfigRepo::new(data_dir, &bot.name);
    if !repo.exists() {
        repo.seed(&bot.dir)
            .with_context(|| format!("cannot version {}'s config", bot.name))?;
        tracing::info!(agent = %bot.name, "versioned the agent's config from bots/");
    } else if let Some(sha) = repo.applied()? {
        let mut on_disk = Vec::new();
        collect_files(&bot.dir, &bot.dir, &mut on_disk)?;
        let mut applied = repo.read_commit(&sha).map_err(|e| anyhow::anyhow!(e))?;
        on_disk.sort_by(|a, b| a.path.cmp(&b.path));
        applied.sort_by(|a, b| a.path.cmp(&b.path));
        if on_disk != applied {
            return Ok(Some(format!(
                "bots/{0} differs from {0}'s applied config; the applied one runs. Propose the change with `hive config propose {0}`.",
                bot.name
            )));
        }
    }
    Ok(None)
}

/// What every agent runs, from its versioned config. A bot seen for the first time is versioned
/// from its `bots/` directory (deploy 1); after that `bots/` is only a template, and a bot whose
/// files differ from its applied config is reported (changes go through approval). Agents that
/// exist only in the data dir (spawned ones) are included. Returns the specs and the reports.
pub fn load_versioned(
    data_dir: &Path,
    bots: Vec<AgentSpec>,
) -> anyhow::Result<(Vec<AgentSpec>, Vec<String>)> {
    let mut specs = Vec::new();
    let mut names: std::collections::BTreeSet<AgentName> =
        bots.iter().map(|b| b.name.clone()).collect();
    // Each bot is a few `git` processes, independent of the others: a handful of threads
    // (a hundred agents' start was seconds of them one after another).
    let chunk = bots.len().div_ceil(VERSIONING_THREADS).max(1);
    let notes: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = bots
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|bot| version_bot(data_dir, bot).transpose())
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("versioning the bots' configs panicked"))?
            })
            .collect::<anyhow::Result<Vec<Vec<String>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    let agents_dir = data_dir.join("agents");
    if let Ok(entries) = std::fs::read_dir(&agents_dir) {
        for e in entries.flatten() {
            if let Some(name) = e
                .file_name()
                .to_str()
                .and_then(|n| AgentName::parse(n).ok())
                && ConfigRepo::new(data_dir, &name).exists()
            {
                names.insert(name);
            }
        }
    }
    let mut errors = Vec::new();
    for name in &names {
        match ConfigRepo::new(data_dir, name).load_current() {
            Ok(s) => specs.push(s),
            Err(errs) => errors.extend(errs.iter().map(|e| format!("  {e}"))),
        }
    }
    for s in &specs {
        for r in &s.allowed_recipients {
            if !names.contains(r) {
                errors.push(format!(
                    "  {}: allowed_recipients: {r:?} is not an agent",
                    s.name
                ));
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "the applied agent configs are invalid:\n{}",
            errors.join("\n")
        );
    }
    Ok((specs, notes))
}

/// The config a spawned agent starts from: it answers at once (scripted, no model), names its
/// origin, and may write to whoever asked for it. The manager then proposes its real config as
/// an ordinary commit.
pub fn template(name: &AgentName, requester: &str, summary: &str) -> Vec<ConfigFile> {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let allowed = AgentName::parse(requester)
        .map(|r| format!("allowed_recipients = [{}]\n", q(r.as_str())))
        .unwrap_or_default();
    let greeting = format!(
        "I am {name}, just spawned from the template. My real config is yet to be proposed."
    );
    let toml = format!(
        "# Spawned by {requester}: {summary}\ndisplay_name = {}\ndescription = {}\n{allowed}\n[brain]\nkind = \"scripted\"\n\n[[brain.rules]]\nreply = {}\n",
        q(name.as_str()),
        q(summary),
        q(&greeting),
        requester = requester.replace('\n', " "),
        summary = summary.replace('\n', " "),
    );
    vec![
        ConfigFile {
            path: "agent.toml".into(),
            executable: false,
            content: toml.into_bytes(),
        },
        ConfigFile {
            path: "prompt.md".into(),
            executable: false,
            content: format!("# {name}\n\n{summary}\n").into_bytes(),
        },
    ]
}

/// Regular files of a bot directory, recursively; symlinks are refused.
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<ConfigFile>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let rel = path
            .strip_prefix(root)
            .expect("walked from root")
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?
            .to_owned();
        if rel.starts_with('.') || rel.contains("/.") {
            continue; // editor and VCS droppings
        }
        if meta.file_type().is_symlink() {
            bail!(
                "{} is a symlink; bot files must be regular files",
                path.display()
            );
        } else if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE {
                bail!("{} is larger than {MAX_FILE} bytes", path.display());
            }
            out.push(ConfigFile {
                path: rel,
                executable: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111
                    != 0,
                content: std::fs::read(&path)?,
            });
        }
    }
    Ok(())
}
