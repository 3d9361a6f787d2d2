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

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, Uri};
    use serde_json::json;
    use url::Url;

    use super::super::api_base;
    use super::*;
    use crate::forge::ForgeKind;

    /// A forge on loopback answering `GET <api>/user` with `login` when the token is right.
    async fn forge(kind: ForgeKind, login: &'static str) -> ForgeClient {
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let want_path = match kind {
                ForgeKind::Github => "/user",
                ForgeKind::Gitea | ForgeKind::Forgejo => "/api/v1/user",
            };
            if !auth.ends_with(" t0ken") {
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"message": "token is required"})),
                );
            }
            if uri.path() != want_path {
                return (
                    axum::http::StatusCode::NOT_FOUND,
                    axum::Json(json!({"message": format!("no {}", uri.path())})),
                );
            }
            (
                axum::http::StatusCode::OK,
                axum::Json(json!({"id": 7, "login": login, "full_name": "The hive"})),
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let site = Url::parse(&format!("http://{addr}/")).expect("a url");
        ForgeClient::new(
            kind,
            api_base(kind, &site),
            "t0ken".into(),
            reqwest::Client::new(),
        )
    }

    #[tokio::test]
    async fn whoami_asks_the_user_endpoint_of_each_kind() {
        struct Case {
            name: &'static str,
            kind: ForgeKind,
            login: &'static str,
            want: Result<&'static str, &'static str>,
        }
        let cases = [
            Case {
                name: "forgejo: /api/v1/user",
                kind: ForgeKind::Forgejo,
                login: "hive-bot",
                want: Ok("hive-bot"),
            },
            Case {
                name: "github: /user at the API's root",
                kind: ForgeKind::Github,
                login: "hive[bot]",
                want: Ok("hive[bot]"),
            },
            Case {
                name: "an empty login is no answer",
                kind: ForgeKind::Gitea,
                login: " ",
                want: Err("the user's login is empty"),
            },
        ];
        for c in cases {
            let got = forge(c.kind, c.login).await.whoami().await;
            match (got, c.want) {
                (Ok(l), Ok(w)) => assert_eq!(l, w, "{}", c.name),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{}: {e}", c.name),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
    }
}
