//! The forge client for a repository, with the token read from the server's `token_file`.
//! (Issue 17, part C.)

use crate::c0re::Core;
use crate::forge::RepoName;
use crate::forge::client::ForgeClient;

impl Core {
    /// The client of the server that follows `repo`; an error names why there is none (the
    /// repository is not followed, the token cannot be read).
    pub async fn forge_client(&self, repo: &RepoName) -> anyhow::Result<ForgeClient> {
        let _ = repo;
        anyhow::bail!("forge clients are not built yet (issue 17, part C)")
    }
}
