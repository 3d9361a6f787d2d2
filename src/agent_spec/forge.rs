//! `[[forge.grant]]` in `agent.toml`: which forge tools an agent may call, on which
//! repositories. Granting is a config change, so it waits for an operator's ✓ like any other;
//! the core enforces it on every call (`c0re/forge/tools.rs`).
//!
//! ```toml
//! [[forge.grant]]
//! repos = ["acme/widgets", "acme/*"]   # a repository, every repository of an owner, or "*"
//! tools = ["forge_get_pr", "forge_review", "forge_discuss"]
//! ```

use serde::Deserialize;

use crate::forge::{ForgeTool, RepoName};

/// `[forge]` of agent.toml as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentForge {
    #[serde(default)]
    pub grant: Vec<RawForgeGrant>,
}

/// One `[[forge.grant]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForgeGrant {
    pub repos: Vec<String>,
    pub tools: Vec<ForgeTool>,
}

/// Which repositories a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPattern {
    /// `*`: every repository the hive follows.
    Any,
    /// `owner/*`: every followed repository of this owner (without case).
    Owner(String),
    /// One repository (without case).
    Repo(RepoName),
}

impl RepoPattern {
    pub fn parse(s: &str) -> Result<Self, crate::forge::BadRepoName> {
        if s == "*" {
            return Ok(Self::Any);
        }
        if let Some(owner) = s.strip_suffix("/*") {
            // Validated as a repository of that owner would be.
            RepoName::parse(&format!("{owner}/x"))?;
            return Ok(Self::Owner(owner.to_owned()));
        }
        RepoName::parse(s).map(Self::Repo)
    }

    pub fn covers(&self, repo: &RepoName) -> bool {
        match self {
            Self::Any => true,
            Self::Owner(o) => o.eq_ignore_ascii_case(repo.owner()),
            Self::Repo(r) => r.to_string().eq_ignore_ascii_case(&repo.to_string()),
        }
    }
}

/// One validated grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeGrant {
    pub repos: Vec<RepoPattern>,
    pub tools: Vec<ForgeTool>,
}

/// Reads the grants; each error is `(key, message)`.
pub fn validate(raw: &RawAgentForge) -> Result<Vec<ForgeGrant>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut grants = Vec::new();
    for (i, g) in raw.grant.iter().enumerate() {
        let mut repos = Vec::new();
        for (j, r) in g.repos.iter().enumerate() {
            match RepoPattern::parse(r) {
                Ok(p) => repos.push(p),
                Err(e) => errors.push((format!("forge.grant[{i}].repos[{j}]"), e.to_string())),
            }
        }
        if g.repos.is_empty() {
            errors.push((
                format!("forge.grant[{i}].repos"),
                "names no repository".into(),
            ));
        }
        if g.tools.is_empty() {
            errors.push((format!("forge.grant[{i}].tools"), "names no tool".into()));
        }
        grants.push(ForgeGrant {
            repos,
            tools: g.tools.clone(),
        });
    }
    if errors.is_empty() {
        Ok(grants)
    } else {
        Err(errors)
    }
}

/// Whether `grants` allow `tool` on `repo`.
pub fn allows(grants: &[ForgeGrant], tool: ForgeTool, repo: &RepoName) -> bool {
    grants
        .iter()
        .any(|g| g.tools.contains(&tool) && g.repos.iter().any(|p| p.covers(repo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).expect("a valid repository")
    }

    #[test]
    fn patterns() {
        struct Case {
            name: &'static str,
            pattern: &'static str,
            covers: &'static [(&'static str, bool)],
        }
        let cases = [
            Case {
                name: "every followed repository",
                pattern: "*",
                covers: &[("acme/widgets", true), ("evil/x", true)],
            },
            Case {
                name: "an owner's, without case",
                pattern: "acme/*",
                covers: &[("acme/widgets", true), ("ACME/x", true), ("acme2/x", false)],
            },
            Case {
                name: "one repository, without case",
                pattern: "acme/widgets",
                covers: &[
                    ("Acme/Widgets", true),
                    ("acme/widgets2", false),
                    ("acme/gadgets", false),
                ],
            },
        ];
        for c in cases {
            let p = RepoPattern::parse(c.pattern).expect(c.name);
            for (r, want) in c.covers {
                assert_eq!(p.covers(&repo(r)), *want, "{}: {r}", c.name);
            }
        }
        for bad in ["", "acme", "*/*", "acme/wid*", "../x", "acme/", "acme/**"] {
            assert!(RepoPattern::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn grants_are_validated() {
        struct Case {
            name: &'static str,
            toml: &'static str,
            want: Result<usize, &'static [&'static str]>,
        }
        let cases = [
            Case {
                name: "none",
                toml: "",
                want: Ok(0),
            },
            Case {
                name: "two grants",
                toml: "[[grant]]\nrepos = [\"acme/*\"]\ntools = [\"forge_get_pr\", \"forge_review\"]\n[[grant]]\nrepos = [\"*\"]\ntools = [\"forge_discuss\"]\n",
                want: Ok(2),
            },
            Case {
                name: "no repository, no tool",
                toml: "[[grant]]\nrepos = []\ntools = []\n",
                want: Err(&["forge.grant[0].repos", "forge.grant[0].tools"]),
            },
            Case {
                name: "a bad pattern is named by its index",
                toml: "[[grant]]\nrepos = [\"acme/x\", \"a b/c\"]\ntools = [\"forge_label\"]\n",
                want: Err(&["forge.grant[0].repos[1]"]),
            },
        ];
        for c in cases {
            let raw: RawAgentForge = toml::from_str(c.toml).expect(c.name);
            let got = validate(&raw)
                .map(|g| g.len())
                .map_err(|e| e.into_iter().map(|(k, _)| k).collect::<Vec<_>>());
            assert_eq!(
                got,
                c.want
                    .map_err(|keys| keys.iter().map(|k| k.to_string()).collect()),
                "{}",
                c.name
            );
        }
        let unknown: Result<RawAgentForge, _> =
            toml::from_str("[[grant]]\nrepos = [\"*\"]\ntools = [\"forge_merge\"]\n");
        assert!(unknown.is_err(), "a tool that is none is refused");
    }

    #[test]
    fn a_grant_needs_the_tool_and_the_repository_together() {
        let grants = vec![
            ForgeGrant {
                repos: vec![RepoPattern::Owner("acme".into())],
                tools: vec![ForgeTool::ForgeGetPr],
            },
            ForgeGrant {
                repos: vec![RepoPattern::Repo(repo("other/x"))],
                tools: vec![ForgeTool::ForgeReview],
            },
        ];
        let cases = [
            ("the first grant", ForgeTool::ForgeGetPr, "acme/w", true),
            ("the second grant", ForgeTool::ForgeReview, "other/x", true),
            (
                "tool of one, repo of the other",
                ForgeTool::ForgeReview,
                "acme/w",
                false,
            ),
            ("neither", ForgeTool::ForgeComment, "evil/x", false),
        ];
        for (name, tool, r, want) in cases {
            assert_eq!(allows(&grants, tool, &repo(r)), want, "{name}");
        }
    }
}
