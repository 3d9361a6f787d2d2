//! The forge REST API as the core calls it, with the token only the core holds: Gitea and
//! Forgejo (`/api/v1`, `Authorization: token …`) and GitHub. (Issue 17, part C, fills it in.)

use url::Url;

use super::{ForgeKind, ItemRef};

/// One forge's API, as the core calls it.
#[derive(Clone)]
pub struct ForgeClient {
    pub kind: ForgeKind,
    pub api_url: Url,
    token: String,
    http: reqwest::Client,
}

/// A file a pull request changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangedFile {
    pub filename: String,
    pub status: String,
    pub additions: u64,
    pub deletions: u64,
}

impl ForgeClient {
    pub fn new(kind: ForgeKind, api_url: Url, token: String, http: reqwest::Client) -> Self {
        Self {
            kind,
            api_url,
            token,
            http,
        }
    }

    /// The files a pull request changes (every page).
    pub async fn pr_files(&self, item: &ItemRef) -> anyhow::Result<Vec<ChangedFile>> {
        let _ = (&self.token, &self.http, item);
        anyhow::bail!("part C")
    }
}
