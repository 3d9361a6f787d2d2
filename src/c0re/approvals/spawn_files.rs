//! A spawn from the manager's own files: `request_init_config(name, files, summary)` lays the
//! given files over the built-in template (so a manager may give just `agent.toml` and
//! `prompt.md`), and the tree, exactly as committed, is validated as `write_config` validates a
//! config (`ConfigRepo::commit_proposed_checked`: paths, sizes, counts, text, no symlinks;
//! `agent.toml` as `hive check` parses it, every error named by its key; its brain's provider
//! granted by hive.toml). Without files the template alone is the first commit, as before.

use super::refusal::{Refusal, grantable};
use crate::agent_spec::AgentName;
use crate::config::Config;
use crate::configrepo::{CommitError, ConfigFile, ConfigRepo};

/// The first tree of a spawned agent: the template's files, each replaced by the given file of
/// the same path, then the given files the template does not have, in the order given. Pure.
pub fn seed_tree(template: Vec<ConfigFile>, files: &[ConfigFile]) -> Vec<ConfigFile> {
    let mut tree: Vec<ConfigFile> = template
        .into_iter()
        .map(|t| match files.iter().find(|f| f.path == t.path) {
            Some(given) => given.clone(),
            None => t,
        })
        .collect();
    for f in files {
        if !tree.iter().any(|t| t.path == f.path) {
            tree.push(f.clone());
        }
    }
    tree
}

/// The first commit's message: where its files came from, and why.
pub fn seed_message(name: &AgentName, summary: &str, from_files: bool) -> String {
    let from = if from_files {
        "the manager's files over the template"
    } else {
        "the template"
    };
    format!("init {name} from {from}: {summary}")
}

/// Why the seed commit was not made: the files are refused, or the repo failed.
enum SeedError {
    Refused(Refusal),
    Failed(anyhow::Error),
}

impl From<CommitError> for SeedError {
    fn from(e: CommitError) -> Self {
        if e.is_refusal() {
            Self::Refused(Refusal::Invalid(e))
        } else {
            Self::Failed(anyhow::anyhow!(e))
        }
    }
}

impl From<anyhow::Error> for SeedError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// Commits `tree` as the new agent's first proposed commit if it validates (nothing moves
/// otherwise). The outer error is an internal failure; the inner one the refusal.
pub(super) fn commit_seed(
    cfg: &Config,
    repo: &ConfigRepo,
    tree: &[ConfigFile],
    message: &str,
) -> anyhow::Result<Result<String, Refusal>> {
    let made = repo.commit_proposed_checked(tree, message, |_, committed| {
        let spec = repo.parse_spec(committed)?;
        grantable(cfg, &spec).map_err(SeedError::Refused)
    });
    match made {
        Ok(sha) => Ok(Ok(sha)),
        Err(SeedError::Refused(r)) => Ok(Err(r)),
        Err(SeedError::Failed(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, content: &str) -> ConfigFile {
        ConfigFile {
            path: path.into(),
            executable: false,
            content: content.as_bytes().to_vec(),
        }
    }

    fn shown(tree: &[ConfigFile]) -> Vec<(String, String)> {
        tree.iter()
            .map(|f| {
                (
                    f.path.clone(),
                    String::from_utf8_lossy(&f.content).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn files_are_laid_over_the_template() {
        struct Case {
            name: &'static str,
            files: Vec<ConfigFile>,
            want: Vec<(&'static str, &'static str)>,
        }
        let template = || vec![f("agent.toml", "T"), f("prompt.md", "P")];
        let cases = [
            Case {
                name: "no files: the template",
                files: vec![],
                want: vec![("agent.toml", "T"), ("prompt.md", "P")],
            },
            Case {
                name: "an agent.toml replaces the template's, the prompt stays",
                files: vec![f("agent.toml", "mine")],
                want: vec![("agent.toml", "mine"), ("prompt.md", "P")],
            },
            Case {
                name: "both replaced",
                files: vec![f("prompt.md", "p2"), f("agent.toml", "t2")],
                want: vec![("agent.toml", "t2"), ("prompt.md", "p2")],
            },
            Case {
                name: "other files are added after, in the order given",
                files: vec![f("tools/b.sh", "b"), f("a.md", "a")],
                want: vec![
                    ("agent.toml", "T"),
                    ("prompt.md", "P"),
                    ("tools/b.sh", "b"),
                    ("a.md", "a"),
                ],
            },
        ];
        for c in cases {
            let got = shown(&seed_tree(template(), &c.files));
            let want: Vec<(String, String)> = c
                .want
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn a_seed_is_validated_as_committed() {
        let cfg = Config::validate(toml::from_str("").expect("parses"), None).expect("validates");
        struct Case {
            name: &'static str,
            toml: &'static str,
            refused: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "a scripted agent",
                toml: "[brain]\nkind = \"scripted\"\n[[brain.rules]]\nreply = \"bob: {body}\"\n",
                refused: None,
            },
            Case {
                name: "a misspelt key is named",
                toml: "alowed_recipients = []\n[brain]\nkind = \"scripted\"\n",
                refused: Some("alowed_recipients"),
            },
            Case {
                name: "an unknown brain",
                toml: "[brain]\nkind = \"telepathy\"\n",
                refused: Some("brain"),
            },
        ];
        for c in cases {
            let tmp = tempfile::tempdir().unwrap();
            let name = AgentName::parse("bob").unwrap();
            let repo = ConfigRepo::new(tmp.path(), &name);
            let tree = seed_tree(
                crate::configrepo::template(&name, "hm1nd", "a test"),
                &[f("agent.toml", c.toml)],
            );
            let got = commit_seed(&cfg, &repo, &tree, "init").expect("the repo works");
            match (c.refused, got) {
                (None, Ok(sha)) => {
                    let files = repo.read_commit(&sha).unwrap();
                    assert_eq!(shown(&files), shown(&tree), "{}", c.name);
                    assert_eq!(repo.proposed().unwrap(), Some(sha), "{}", c.name);
                }
                (Some(want), Err(r)) => {
                    assert!(r.to_string().contains(want), "{}: {r}", c.name);
                    assert_eq!(repo.proposed().unwrap(), None, "{}: nothing moved", c.name);
                }
                (want, got) => panic!("{}: wanted {want:?}, got {got:?}", c.name),
            }
        }
    }
}
