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
