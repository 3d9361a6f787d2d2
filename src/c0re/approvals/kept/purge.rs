//! A purge removes one kept agent's directory, `<data>/agents/<name>`, and nothing else.
//!
//! Rules ([`check_purge_target`], a table test below):
//! - the name is an [`AgentName`] (`[a-z][a-z0-9_-]{0,31}`, not reserved) before any path is
//!   made of it: `..`, `../x`, `a/b`, `.`, an absolute path, an empty or a unicode name are
//!   refused, so the directory is always exactly one component under `<data>/agents`;
//! - every component from the data dir down (`agents`, then `<name>`) is looked at without
//!   following links: a symlink in either place is refused, and so is anything that is not a
//!   directory; a missing directory is refused (nothing to purge);
//! - the removal follows no link: `std::fs::remove_dir_all` removes a symlink found inside the
//!   directory as a link (its target survives), and one swapped in for the directory itself
//!   after the check is removed as a link too.
//!
//! The data dir itself is the operator's choice and is not judged.

use std::path::{Path, PathBuf};

use crate::agent_spec::{AgentName, NameError};

/// What one path is, by `symlink_metadata` (never following a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Missing,
    Dir,
    Symlink,
    /// A file, a socket, a device: anything else.
    Other,
}

impl Entry {
    /// `path` as it is, without following a link. An error other than "not found" is not a
    /// fact to decide on: it is returned.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Ok(Self::Symlink),
            Ok(m) if m.is_dir() => Ok(Self::Dir),
            Ok(_) => Ok(Self::Other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::Missing),
            Err(e) => Err(e),
        }
    }
}

/// Why a purge removes nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PurgeRefused {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0} is a symlink: a purge follows no link")]
    Symlink(String),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error("{0} does not exist: nothing to purge")]
    Missing(String),
}

/// Why a purge failed: refused before anything was removed, or the removal itself failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Refused(#[from] PurgeRefused),
    #[error("cannot purge {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Whether `name`'s directory may be removed, given what `agents` (`<data>/agents`) and
/// `agent` (`<data>/agents/<name>`) are, as seen without following links (module doc). The
/// name is judged first.
pub fn check_purge_target(
    name: &str,
    agents: Entry,
    agent: Entry,
) -> Result<AgentName, PurgeRefused> {
    let name = AgentName::parse(name)?;
    for (what, entry) in [
        ("agents".to_owned(), agents),
        (format!("agents/{name}"), agent),
    ] {
        match entry {
            Entry::Dir => {}
            Entry::Symlink => return Err(PurgeRefused::Symlink(what)),
            Entry::Other => return Err(PurgeRefused::NotADirectory(what)),
            Entry::Missing => return Err(PurgeRefused::Missing(what)),
        }
    }
    Ok(name)
}

/// Removes `<data_dir>/agents/<name>` as [`check_purge_target`] allows: the name is parsed
/// before any path is made of it, the two components are looked at without following links,
/// and the removal follows none. Returns the directory removed.
pub fn purge_agent_dir(data_dir: &Path, name: &str) -> Result<PathBuf, PurgeError> {
    let parsed = AgentName::parse(name).map_err(PurgeRefused::from)?;
    let agents = data_dir.join("agents");
    let dir = agents.join(parsed.as_str());
    let look = |p: &Path, what: String| {
        Entry::of(p).map_err(|source| PurgeError::Io { path: what, source })
    };
    let checked = check_purge_target(
        name,
        look(&agents, "agents".into())?,
        look(&dir, format!("agents/{parsed}"))?,
    )?;
    debug_assert_eq!(checked, parsed);
    std::fs::remove_dir_all(&dir).map_err(|source| PurgeError::Io {
        path: format!("agents/{parsed}"),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn purge_target_table() {
        struct Case {
            name: &'static str,
            agent: &'static str,
            agents: Entry,
            dir: Entry,
            want: Result<&'static str, PurgeRefused>,
        }
        let bad_start = |n: &str| Err(PurgeRefused::Name(NameError::BadStart(n.into())));
        use Entry::{Dir, Missing, Other, Symlink};
        let cases = [
            Case {
                name: "a kept agent's directory",
                agent: "echo",
                agents: Dir,
                dir: Dir,
                want: Ok("echo"),
            },
            Case {
                name: "the parent: never the data dir",
                agent: "..",
                agents: Dir,
                dir: Dir,
                want: bad_start(".."),
            },
            Case {
                name: "a path out of agents/",
                agent: "../x",
                agents: Dir,
                dir: Dir,
                want: bad_start("../x"),
            },
            Case {
                name: "the agents dir itself",
                agent: ".",
                agents: Dir,
                dir: Dir,
                want: bad_start("."),
            },
            Case {
                name: "a nested path",
                agent: "a/b",
                agents: Dir,
                dir: Dir,
                want: Err(PurgeRefused::Name(NameError::BadChar {
                    name: "a/b".into(),
                    ch: '/',
                })),
            },
            Case {
                name: "an absolute path",
                agent: "/etc",
                agents: Dir,
                dir: Dir,
                want: bad_start("/etc"),
            },
            Case {
                name: "empty",
                agent: "",
                agents: Dir,
                dir: Dir,
                want: Err(PurgeRefused::Name(NameError::Empty)),
            },
            Case {
                name: "a unicode look-alike (cyrillic)",
                agent: "\u{435}cho",
                agents: Dir,
                dir: Dir,
                want: bad_start("\u{435}cho"),
            },
            Case {
                name: "a reserved name",
                agent: "hive",
                agents: Dir,
                dir: Dir,
                want: Err(PurgeRefused::Name(NameError::Reserved("hive".into()))),
            },
            Case {
                name: "the agent's dir is a symlink",
                agent: "echo",
                agents: Dir,
                dir: Symlink,
                want: Err(PurgeRefused::Symlink("agents/echo".into())),
            },
            Case {
                name: "agents/ is a symlink",
                agent: "echo",
                agents: Symlink,
                dir: Dir,
                want: Err(PurgeRefused::Symlink("agents".into())),
            },
            Case {
                name: "the agent's dir is a file",
                agent: "echo",
                agents: Dir,
                dir: Other,
                want: Err(PurgeRefused::NotADirectory("agents/echo".into())),
            },
            Case {
                name: "nothing there",
                agent: "echo",
                agents: Dir,
                dir: Missing,
                want: Err(PurgeRefused::Missing("agents/echo".into())),
            },
        ];
        for c in cases {
            let got = check_purge_target(c.agent, c.agents, c.dir).map(|n| n.as_str().to_owned());
            assert_eq!(got, c.want.map(str::to_owned), "{}", c.name);
        }
    }

    /// A data dir with two agents and a file beside them, and a directory outside it.
    fn hive() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        for a in ["echo", "argus"] {
            std::fs::create_dir_all(data.join("agents").join(a).join("state")).unwrap();
            std::fs::write(data.join("agents").join(a).join("agent.log"), "log").unwrap();
        }
        std::fs::write(data.join("c0re.db"), "db").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), "keep me").unwrap();
        (tmp, data, outside)
    }

    fn survivors(data: &Path, outside: &Path) {
        assert!(data.join("c0re.db").is_file(), "the store survives");
        assert!(
            data.join("agents/argus/agent.log").is_file(),
            "a sibling survives"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("precious")).unwrap(),
            "keep me",
            "what is outside survives"
        );
    }

    #[test]
    fn a_purge_removes_only_the_agents_own_directory() {
        let (_tmp, data, outside) = hive();
        // Links inside the agent's dir, to a directory and a file outside: removed as links.
        symlink(&outside, data.join("agents/echo/state/escape")).unwrap();
        symlink(outside.join("precious"), data.join("agents/echo/file")).unwrap();
        let removed = purge_agent_dir(&data, "echo").unwrap();
        assert_eq!(removed, data.join("agents/echo"));
        assert!(!removed.exists());
        survivors(&data, &outside);
    }

    #[test]
    fn hostile_names_and_planted_links_remove_nothing() {
        let (_tmp, data, outside) = hive();
        for name in [
            "..",
            "../x",
            "a/b",
            "",
            ".",
            "/etc",
            "agents",
            "ech\u{f6}",
            "../../outside",
        ] {
            let got = purge_agent_dir(&data, name);
            // "agents" is a well-formed name with no directory of its own.
            assert!(matches!(got, Err(PurgeError::Refused(_))), "{name:?}");
            survivors(&data, &outside);
            assert!(data.join("agents/echo/agent.log").is_file(), "{name:?}");
        }
        // The agent's dir swapped for a link to the outside.
        std::fs::remove_dir_all(data.join("agents/echo")).unwrap();
        symlink(&outside, data.join("agents/echo")).unwrap();
        let e = purge_agent_dir(&data, "echo").unwrap_err();
        assert!(
            matches!(&e, PurgeError::Refused(PurgeRefused::Symlink(p)) if p == "agents/echo"),
            "{e}"
        );
        assert!(
            data.join("agents/echo").is_symlink(),
            "the link is left as found"
        );
        survivors(&data, &outside);
        // agents/ itself swapped for a link.
        let real = data.join("agents-real");
        std::fs::rename(data.join("agents"), &real).unwrap();
        symlink(&real, data.join("agents")).unwrap();
        assert!(matches!(
            purge_agent_dir(&data, "argus"),
            Err(PurgeError::Refused(PurgeRefused::Symlink(p))) if p == "agents"
        ));
        assert!(real.join("argus/agent.log").is_file());
        // A data dir with nothing in it.
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            purge_agent_dir(empty.path(), "echo"),
            Err(PurgeError::Refused(PurgeRefused::Missing(_)))
        ));
    }
}
