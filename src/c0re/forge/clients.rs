//! The forge client for a repository: the server that follows it (`[[forge.servers]]`), with
//! the token of its `token_file` (read bounded, trimmed). The token used must be one the
//! secret filter guards, which read the file at start: a token the operator rotates while the
//! hive runs is refused (said why) until the next start, never sent unguarded, so nothing the
//! forge echoes of it could pass the filter. The HTTP client is shared, built once, and
//! follows no redirects: a redirect could carry the token to a host the operator did not
//! declare.

use crate::c0re::Core;
use crate::forge::RepoName;
use crate::forge::client::{ForgeClient, api_base};

/// Why there is no client for a repository.
#[derive(Debug, thiserror::Error)]
pub enum NoClient {
    #[error("{0} is not followed: no [[forge.servers]] in hive.toml lists it")]
    NotFollowed(RepoName),
    #[error("the token of forge server {server} cannot be read: {why}")]
    Token { server: String, why: String },
    #[error(
        "the token of forge server {0} is not the one the hive read at start (its secret filter does not know it): a rotated token takes effect at the next start"
    )]
    Rotated(String),
    #[error("cannot build the forge HTTP client: {0}")]
    Http(String),
}

impl Core {
    /// The client of the server that follows `repo`; an error names why there is none (the
    /// repository is not followed, the token cannot be read).
    pub async fn forge_client(&self, repo: &RepoName) -> anyhow::Result<ForgeClient> {
        Ok(self.forge_client_of(repo)?)
    }

    /// [`Core::forge_client`] with the reason typed.
    pub(crate) fn forge_client_of(&self, repo: &RepoName) -> Result<ForgeClient, NoClient> {
        let server = self
            .cfg()
            .forge
            .server_of(repo)
            .ok_or_else(|| NoClient::NotFollowed(repo.clone()))?;
        let token =
            crate::config::read_key_file(&server.token_file).map_err(|e| NoClient::Token {
                server: server.name.clone(),
                why: format!("{e:#}"),
            })?;
        if self.secrets().find(&token).is_none() {
            return Err(NoClient::Rotated(server.name.clone()));
        }
        Ok(ForgeClient::new(
            server.kind,
            api_base(server.kind, &server.url),
            token,
            self.forge().http()?.clone(),
        ))
    }
}

impl super::Forge {
    /// The shared HTTP client of forge calls.
    fn http(&self) -> Result<&reqwest::Client, NoClient> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NoClient::Http(e.to_string()))?;
        Ok(self.http.get_or_init(|| client))
    }
}
