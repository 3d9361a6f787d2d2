//! Who the token is: `GET /user` (Gitea and Forgejo under `/api/v1`, GitHub at its API's root),
//! whose `login` the forge lanes learn when `[[forge.servers]] login` is not given, so the
//! agents' own writes echoed back by the forge wake nobody.

use serde::Deserialize;

use super::{ForgeClient, ForgeError};

/// The part of the forge's user object read.
#[derive(Deserialize)]
struct WireUser {
    login: String,
}

impl ForgeClient {
    /// The login of the account the token belongs to.
    pub async fn whoami(&self) -> Result<String, ForgeError> {
        let mut url = self.api_url.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            segs.push("user");
        }
        let call = format!("GET {}", url.path());
        let (u, _): (WireUser, _) = self.get_json(url).await?;
        if u.login.trim().is_empty() {
            return Err(ForgeError::Decode {
                call,
                message: "the user's login is empty".into(),
            });
        }
        Ok(u.login)
    }
}
