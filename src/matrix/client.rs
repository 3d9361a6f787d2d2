//! The appservice's client-server API client.
//!
//! Every request is a ruma-typed request sent with the `as_token`; acting as an agent adds
//! identity assertion (`?user_id=`). The token lives only here: it is never logged (reqwest does
//! not log headers, and our own spans record only method, path and the asserted user).

use std::borrow::Cow;
use std::time::Duration;

use ruma::UserId;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, MatrixVersion, OutgoingRequest,
    OutgoingRequestAppserviceExt, SupportedVersions,
};
use url::Url;

/// What the homeserver (or the way to it) said no with.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{path}: homeserver answered {status} {errcode}: {message}")]
    Server {
        path: String,
        status: u16,
        errcode: String,
        message: String,
    },
    #[error("{path}: cannot reach the homeserver: {source}")]
    Transport {
        path: String,
        source: reqwest::Error,
    },
    #[error("{path}: {message}")]
    Protocol { path: String, message: String },
}

impl MatrixError {
    pub fn errcode(&self) -> Option<&str> {
        match self {
            MatrixError::Server { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            MatrixError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Will fail again the same way: the homeserver refused the request itself (too large,
    /// forbidden, malformed), rather than being away or overloaded.
    pub fn permanent(&self) -> bool {
        matches!(self, MatrixError::Server { status, .. } if (400..500).contains(status) && *status != 429)
    }

    /// Worth trying again: the homeserver is restarting or overloaded.
    fn transient(&self) -> bool {
        match self {
            MatrixError::Transport { .. } => true,
            MatrixError::Server { status, .. } => *status == 429 || *status >= 500,
            MatrixError::Protocol { .. } => false,
        }
    }
}

/// Whether a failed homeserver call, with whatever context it gathered on the way, will fail
/// again the same way ([`MatrixError::permanent`]); anything else is worth trying later.
pub fn is_permanent(e: &anyhow::Error) -> bool {
    e.downcast_ref::<MatrixError>()
        .is_some_and(MatrixError::permanent)
}

/// Supplies the path-builder input a request type needs (ruma picks a path by spec version).
pub trait PathInput: PathBuilder {
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Cow<'_, SupportedVersions> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) {}
}

#[derive(Clone)]
pub struct AsClient {
    http: reqwest::Client,
    base: String,
    as_token: String,
    versions: SupportedVersions,
    /// Whose token `as_token` is: the appservice's, or one user's own (the web console acting
    /// as the operator, `c0re/web/actions/operator.rs`).
    auth: Auth,
}

/// How the client's token is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The appservice's `as_token` (identity assertion may add `?user_id=`).
    Appservice,
    /// A user's access token, where the endpoint asks for one; no identity assertion.
    User,
}

impl std::fmt::Debug for AsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsClient")
            .field("base", &self.base)
            .field("as_token", &"<redacted>")
            .finish()
    }
}

/// The debug line of each request to the homeserver (`hive bench`'s signals section runs the
/// core with `hyperhive::matrix::client=debug` and counts them by kind).
pub const LOG_CALL: &str = "homeserver call";

impl AsClient {
    pub fn new(homeserver: &Url, as_token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            base: homeserver.as_str().trim_end_matches('/').to_owned(),
            as_token,
            versions: SupportedVersions {
                versions: [MatrixVersion::V1_11].into(),
                features: Default::default(),
            },
            auth: Auth::Appservice,
        })
    }

    /// A client that acts as one user with that user's own `access_token` (an empty one for
    /// endpoints that need none, such as `/login`). `send` with `user` set is refused: a user's
    /// token asserts no other identity.
    pub fn for_user(homeserver: &Url, access_token: String) -> anyhow::Result<Self> {
        Ok(Self {
            auth: Auth::User,
            ..Self::new(homeserver, access_token)?
        })
    }

    /// Sends `req` as the appservice's own user, or as `user` (identity assertion).
    /// Transient failures (transport errors, 429, 5xx) are retried a few times with backoff.
    pub async fn send<R>(
        &self,
        req: R,
        user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest + Clone,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(req.clone(), user).await {
                Err(e) if e.transient() && attempt < 6 => {
                    tracing::debug!(error = %e, attempt, "retrying homeserver request");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    async fn send_once<R>(
        &self,
        req: R,
        user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, MatrixError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        R::PathBuilder: PathInput,
    {
        let token = match self.auth {
            Auth::Appservice => SendAccessToken::Appservice(&self.as_token),
            Auth::User if user.is_some() => {
                return Err(MatrixError::Protocol {
                    path: "request".into(),
                    message: "a user's own token cannot assert another identity".into(),
                });
            }
            Auth::User => SendAccessToken::IfRequired(&self.as_token),
        };
        let input = <R::PathBuilder as PathInput>::input(&self.versions);
        let http_req = match user {
            Some(u) => req.try_into_http_request_with_identity::<Vec<u8>>(
                &self.base,
                token,
                AppserviceUserIdentity::new(u),
                input,
            ),
            None => req.try_into_http_request::<Vec<u8>>(&self.base, token, input),
        };
        let http_req = http_req.map_err(|e| MatrixError::Protocol {
            path: "request".into(),
            message: e.to_string(),
        })?;
        let path = http_req.uri().path().to_owned();
        let (parts, body) = http_req.into_parts();
        tracing::debug!(method = %parts.method, path = %path, "{}", LOG_CALL);
        let url = parts.uri.to_string();
        let mut builder = self.http.request(parts.method, url).body(body);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let resp = builder
            .send()
            .await
            .map_err(|source| MatrixError::Transport {
                path: path.clone(),
                source,
            })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| MatrixError::Transport {
                path: path.clone(),
                source,
            })?;
        if !status.is_success() {
            #[derive(serde::Deserialize, Default)]
            struct ErrBody {
                #[serde(default)]
                errcode: String,
                #[serde(default)]
                error: String,
            }
            let e: ErrBody = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(MatrixError::Server {
                path,
                status: status.as_u16(),
                errcode: e.errcode,
                message: e.error,
            });
        }
        let mut http_resp = http::Response::builder().status(status);
        for (name, value) in &headers {
            http_resp = http_resp.header(name, value);
        }
        let http_resp = http_resp
            .body(bytes.to_vec())
            .map_err(|e| MatrixError::Protocol {
                path: path.clone(),
                message: e.to_string(),
            })?;
        R::IncomingResponse::try_from_http_response(http_resp).map_err(|e| MatrixError::Protocol {
            path,
            message: e.to_string(),
        })
    }
}
