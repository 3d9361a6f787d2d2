//! The commits on an agent's proposed side that were never applied: what a change the core
//! makes itself (`!model`) must not carry along under someone else's name.

use super::ConfigRepo;
use super::git::{PROPOSED, git_str};

/// A commit on the proposed side, not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unapplied {
    pub sha: String,
    /// Its message's first line.
    pub subject: String,
}

impl ConfigRepo {
    /// The proposed branch's commits that the applied commit does not contain, newest first
    /// (none while the branch is the applied commit, or there is no branch).
    pub fn unapplied(&self) -> anyhow::Result<Vec<Unapplied>> {
        let (Some(tip), Some(applied)) = (self.resolve(PROPOSED)?, self.applied()?) else {
            return Ok(Vec::new());
        };
        if tip == applied {
            return Ok(Vec::new());
        }
        let out = git_str(
            &self.dirs.repo(),
            &["log", "--format=%H %s", &tip, &format!("^{applied}")],
        )?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (sha, subject) = l.split_once(' ').unwrap_or((l, ""));
                (!sha.is_empty()).then(|| Unapplied {
                    sha: sha.to_owned(),
                    subject: subject.to_owned(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, seeded};

    #[test]
    fn only_commits_not_applied_are_listed() {
        let (_tmp, repo) = seeded();
        assert_eq!(repo.unapplied().unwrap(), Vec::new(), "only the seed");
        let a = repo
            .commit_proposed(&[file("prompt.md", "a")], "first change")
            .unwrap();
        let b = repo
            .commit_proposed(&[file("prompt.md", "b")], "second change\n\nbody")
            .unwrap();
        let got = repo.unapplied().unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|u| (u.sha.as_str(), u.subject.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(b.as_str(), "second change"), (a.as_str(), "first change")]
        );
        let files = repo.read_commit(&b).unwrap();
        repo.deploy(&b, 2, &files).unwrap();
        assert_eq!(repo.unapplied().unwrap(), Vec::new(), "all applied");
    }
}
