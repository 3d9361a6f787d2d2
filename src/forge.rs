//! Forges (Forgejo, Gitea, GitHub): the shared words of the forge lanes, a leaf under the core.
//!
//! - [`webhook`]: a delivery's signature, its id and its payload read into a [`webhook::ForgeEvent`].
//! - [`client`]: the forge's REST API as the core calls it with the token it holds.
//!
//! What the core does with them is `c0re/forge/` (docs/forge.md).

pub mod client;
pub mod webhook;

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which API a forge speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    /// Gitea: `/api/v1`, `Authorization: token …`, `X-Gitea-Signature`.
    Gitea,
    /// Forgejo (Gitea's API, `X-Forgejo-Signature`; it sends the `X-Gitea-*` headers too).
    Forgejo,
    /// GitHub's REST API, `X-Hub-Signature-256`.
    Github,
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgeKind::Gitea => "gitea",
            ForgeKind::Forgejo => "forgejo",
            ForgeKind::Github => "github",
        })
    }
}

/// A repository, `owner/name`: validated once, so every alias, path and URL made from it is
/// safe. Each part is `[A-Za-z0-9._-]{1,100}`, not `.` or `..`, and does not start with `.`
/// or `-` (what Gitea and GitHub accept, narrowed where a name would reach a URL's path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName {
    owner: String,
    name: String,
}

/// A repository name that is not `owner/name` of safe characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a repository: owner/name, each of [A-Za-z0-9._-], 1 to 100 characters, not starting with . or -"
)]
pub struct BadRepoName(pub String);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, BadRepoName> {
        let bad = || BadRepoName(s.to_owned());
        let (owner, name) = s.split_once('/').ok_or_else(bad)?;
        let part_ok = |p: &str| {
            (1..=100).contains(&p.len())
                && !p.starts_with(['.', '-'])
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if !part_ok(owner) || !part_ok(name) {
            return Err(bad());
        }
        Ok(Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The localpart of the repository's room alias: `forge-<owner>-<repo>`, lowercased (so
    /// `Acme/Widgets` and `acme/widgets` are one room; forges compare names without case).
    pub fn alias_localpart(&self) -> String {
        format!("forge-{}-{}", self.owner, self.name).to_ascii_lowercase()
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl Serialize for RepoName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RepoName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A pull request or an issue (they share one number space on Gitea and GitHub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    PullRequest,
    Issue,
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemKind::PullRequest => "pull request",
            ItemKind::Issue => "issue",
        })
    }
}

/// One pull request or issue of a repository: what a thread and a tool call name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemRef {
    pub repo: RepoName,
    pub number: u64,
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.repo, self.number)
    }
}

/// The hive's forge tools, by name (what an agent's `[[forge.grant]]` lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgeTool {
    ForgeComment,
    ForgeLabel,
    ForgeRequestReview,
    ForgeReview,
    ForgeGetPr,
    ForgeGetIssue,
    /// Say something in the item's Matrix thread (no forge call).
    ForgeDiscuss,
}

impl ForgeTool {
    pub const ALL: [ForgeTool; 7] = [
        ForgeTool::ForgeComment,
        ForgeTool::ForgeLabel,
        ForgeTool::ForgeRequestReview,
        ForgeTool::ForgeReview,
        ForgeTool::ForgeGetPr,
        ForgeTool::ForgeGetIssue,
        ForgeTool::ForgeDiscuss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ForgeTool::ForgeComment => "forge_comment",
            ForgeTool::ForgeLabel => "forge_label",
            ForgeTool::ForgeRequestReview => "forge_request_review",
            ForgeTool::ForgeReview => "forge_review",
            ForgeTool::ForgeGetPr => "forge_get_pr",
            ForgeTool::ForgeGetIssue => "forge_get_issue",
            ForgeTool::ForgeDiscuss => "forge_discuss",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the call changes something on the forge (rate-limited as a forge write).
    pub fn writes(self) -> bool {
        matches!(
            self,
            ForgeTool::ForgeComment
                | ForgeTool::ForgeLabel
                | ForgeTool::ForgeRequestReview
                | ForgeTool::ForgeReview
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        struct Case {
            name: &'static str,
            input: &'static str,
            ok: bool,
        }
        let cases = [
            Case {
                name: "plain",
                input: "acme/widgets",
                ok: true,
            },
            Case {
                name: "dots, dashes, underscores",
                input: "a-b_c/x.y",
                ok: true,
            },
            Case {
                name: "no slash",
                input: "acme",
                ok: false,
            },
            Case {
                name: "two slashes",
                input: "acme/w/x",
                ok: false,
            },
            Case {
                name: "dot dot",
                input: "acme/..",
                ok: false,
            },
            Case {
                name: "leading dot",
                input: ".acme/w",
                ok: false,
            },
            Case {
                name: "leading dash",
                input: "acme/-w",
                ok: false,
            },
            Case {
                name: "empty owner",
                input: "/w",
                ok: false,
            },
            Case {
                name: "space",
                input: "acme/w x",
                ok: false,
            },
            Case {
                name: "colon (an alias separator)",
                input: "acme/w:x",
                ok: false,
            },
            Case {
                name: "percent",
                input: "acme/%2e",
                ok: false,
            },
        ];
        for c in cases {
            assert_eq!(RepoName::parse(c.input).is_ok(), c.ok, "{}", c.name);
        }
        let r = RepoName::parse("Acme/Widgets.rs").expect("valid");
        assert_eq!(r.alias_localpart(), "forge-acme-widgets.rs");
        assert_eq!(r.to_string(), "Acme/Widgets.rs");
    }

    #[test]
    fn tool_names_round_trip() {
        for t in ForgeTool::ALL {
            assert_eq!(ForgeTool::from_name(t.name()), Some(t));
            let json = serde_json::to_value(t).expect("serialises");
            assert_eq!(json, t.name());
        }
        assert_eq!(ForgeTool::from_name("forge_delete_repo"), None);
    }
}
