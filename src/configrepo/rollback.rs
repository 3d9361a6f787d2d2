//! A commit of an earlier tree on top of the applied config: what a rollback files. Its tree
//! is exactly that earlier commit's (the files of an old deploy), its parent the applied commit,
//! so it fast-forwards and is requested, snapshotted, diffed and applied like any other commit.
//!
//! The `proposed` branch moves to it (compare-and-swap, like every proposed commit). Commits on
//! the proposed side that were never applied are abandoned by that move; they are kept
//! reachable under `refs/abandoned/<sha>` (nothing in a bare repo's reflog would keep them) and
//! named to whoever asked, so nothing written is lost.

use anyhow::Context;

use super::git::{PROPOSED, git, git_str, git_str_in};
use super::{ConfigRepo, parse_sha};

/// A commit of an earlier tree on the applied config ([`ConfigRepo::commit_tree_on_applied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnApplied {
    /// The new commit: the proposed branch's tip now.
    pub sha: String,
    /// The applied commit it is based on.
    pub parent: String,
    /// Proposed commits that were not applied and are no longer on the proposed side, newest
    /// first (kept under `refs/abandoned/`).
    pub abandoned: Vec<String>,
    /// Where the proposed branch was before (to put it back if the request is refused).
    pub previous: Option<String>,
}

/// The ref that keeps an abandoned proposed tip (and so its ancestors) reachable.
pub fn abandoned_ref(tip: &str) -> String {
    format!("refs/abandoned/{tip}")
}

impl ConfigRepo {
    /// The tree of commit `sha` (which must be in the core's repo).
    pub fn tree_of(&self, sha: &str) -> anyhow::Result<String> {
        let sha = parse_sha(sha).map_err(|e| anyhow::anyhow!(e))?;
        self.require_commit(&sha)?;
        git_str(
            &self.dirs.repo(),
            &["rev-parse", &format!("{sha}^{{tree}}")],
        )
    }

    /// Commits `source`'s tree, unchanged, on top of the applied commit with `message`, and
    /// moves the `proposed` branch to it if the branch has not moved meanwhile (else fails,
    /// changing nothing the agent sees). Proposed commits not applied are kept reachable and
    /// named in the answer.
    pub fn commit_tree_on_applied(&self, source: &str, message: &str) -> anyhow::Result<OnApplied> {
        let tree = self.tree_of(source)?;
        let repo = self.dirs.repo();
        let parent = self
            .applied()?
            .with_context(|| format!("{} has no applied config", self.name))?;
        let old = self.resolve(PROPOSED)?;
        let sha = git_str_in(
            &repo,
            &["commit-tree", "--no-gpg-sign", &tree, "-p", &parent],
            message.as_bytes(),
        )?;
        let abandoned = match &old {
            Some(tip) if *tip != parent => {
                let out = git_str(&repo, &["rev-list", tip, &format!("^{parent}")])?;
                let shas: Vec<String> = out.lines().map(str::to_owned).collect();
                if !shas.is_empty() {
                    git(&repo, &["update-ref", &abandoned_ref(tip), tip], None)
                        .with_context(|| format!("cannot keep {tip} reachable"))?;
                }
                shas
            }
            _ => Vec::new(),
        };
        self.move_proposed(&sha, old.as_deref())?;
        Ok(OnApplied {
            sha,
            parent,
            abandoned,
            previous: old,
        })
    }

    /// Puts the proposed branch back where it was before `made`, if it has not moved since (a
    /// rollback the core refused leaves the manager's proposed commits as they were).
    pub fn restore_proposed(&self, made: &OnApplied) -> anyhow::Result<()> {
        match &made.previous {
            Some(previous) => self.move_proposed(previous, Some(&made.sha)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, seeded};
    use super::*;

    /// v1 is deploy 1, v2 (a prompt change and a new file) deploy 2.
    fn deployed_twice() -> (tempfile::TempDir, ConfigRepo, String, String) {
        let (tmp, repo) = seeded();
        let v1 = repo.applied().unwrap().unwrap();
        let v2 = repo
            .commit_proposed(&[file("prompt.md", "v2"), file("notes.md", "new")], "v2")
            .unwrap();
        let files = repo.read_commit(&v2).unwrap();
        repo.deploy(&v2, 2, &files).unwrap();
        (tmp, repo, v1, v2)
    }

    fn ref_of(repo: &ConfigRepo, name: &str) -> Option<String> {
        git_str(
            &repo.dirs.repo(),
            &["rev-parse", "--verify", "--quiet", name],
        )
        .ok()
        .filter(|s| !s.is_empty())
    }

    #[test]
    fn a_rollback_commits_the_old_tree_on_the_applied_commit() {
        let (_tmp, repo, v1, v2) = deployed_twice();
        let back = repo
            .commit_tree_on_applied(&v1, "rollback to deploy/1")
            .unwrap();
        assert_eq!(back.parent, v2);
        assert!(back.abandoned.is_empty(), "{back:?}");
        assert_eq!(repo.tree_of(&back.sha).unwrap(), repo.tree_of(&v1).unwrap());
        assert_eq!(ref_of(&repo, "refs/heads/proposed"), Some(back.sha.clone()));
        assert_eq!(ref_of(&repo, &format!("{}^", back.sha)), Some(v2.clone()));
        assert!(repo.is_fast_forward(&back.sha).unwrap());
        // Its diff against the applied config takes v2 back out.
        let diff = repo.diff(&back.sha).unwrap();
        assert!(diff.contains("-v2") && diff.contains("+v1"), "{diff}");
        assert!(diff.contains("deleted file mode"), "{diff}");
        // The files are v1's: applied as deploy 3, the agent runs v1 again.
        let files = repo.read_commit(&back.sha).unwrap();
        repo.snapshot(&back.sha, "9").unwrap();
        repo.deploy(&back.sha, 3, &files).unwrap();
        assert_eq!(repo.load_current().unwrap().prompt.as_deref(), Some("v1"));
        assert_eq!(repo.deploys().unwrap().len(), 3);
    }

    #[test]
    fn a_refused_rollback_puts_the_proposed_branch_back() {
        let (_tmp, repo, v1, _v2) = deployed_twice();
        let a = repo
            .commit_proposed(&[file("prompt.md", "a")], "a")
            .unwrap();
        let back = repo.commit_tree_on_applied(&v1, "rollback").unwrap();
        assert_eq!(back.previous.as_deref(), Some(a.as_str()));
        repo.restore_proposed(&back).unwrap();
        assert_eq!(ref_of(&repo, "refs/heads/proposed"), Some(a.clone()));
        // Not when the branch moved on since: then it stays where it is.
        let again = repo.commit_tree_on_applied(&v1, "rollback").unwrap();
        let c = repo
            .commit_proposed(&[file("prompt.md", "c")], "c")
            .unwrap();
        assert!(repo.restore_proposed(&again).is_err());
        assert_eq!(ref_of(&repo, "refs/heads/proposed"), Some(c));
    }

    #[test]
    fn unapplied_proposals_are_named_and_kept() {
        let (_tmp, repo, v1, _v2) = deployed_twice();
        let a = repo
            .commit_proposed(&[file("prompt.md", "a")], "a")
            .unwrap();
        let b = repo
            .commit_proposed(&[file("prompt.md", "b")], "b")
            .unwrap();
        let back = repo.commit_tree_on_applied(&v1, "rollback").unwrap();
        assert_eq!(back.abandoned, [b.clone(), a.clone()], "newest first");
        assert_eq!(ref_of(&repo, &abandoned_ref(&b)), Some(b.clone()));
        assert_eq!(ref_of(&repo, "refs/heads/proposed"), Some(back.sha));
        // Still readable by sha.
        assert!(repo.read_commit(&a).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_commit_here() {
        let (_tmp, repo, _v1, _v2) = deployed_twice();
        for bad in ["deploy/1", "refs/heads/applied", "HEAD", &"0".repeat(40)] {
            assert!(
                repo.commit_tree_on_applied(bad, "x").is_err(),
                "{bad} is refused"
            );
        }
        let tree = repo.tree_of(&repo.applied().unwrap().unwrap()).unwrap();
        let e = repo.commit_tree_on_applied(&tree, "x").unwrap_err();
        assert!(format!("{e:#}").contains("not a commit"), "{e:#}");
    }
}
