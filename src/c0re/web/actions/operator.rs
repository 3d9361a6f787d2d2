//! The operator's own Matrix account, as the web console uses it: every action is an event
//! sent with the operator's access token, so the homeserver, the approvals room's power levels
//! and the core's audit see the operator, exactly as from any other Matrix client.
//!
//! Where the account comes from ([`identity`], pure, a table test below):
//! - `<data>/web-operator.json` (`{"user_id": "@op:server", "access_token": "…"}`), written by
//!   the operator, wins: it is how a hive run with `hive c0re` against an existing homeserver
//!   gives the console an account. The token is used as it is (never refreshed: a refused one
//!   is said, with the file to rewrite);
//! - else `<data>/operator.json` (`hive up` minted the operator): the console logs in with its
//!   password (`m.login.password`, the fixed device [`DEVICE_ID`], so restarts reuse one device)
//!   and keeps the access token in `<data>/web-operator-session.json` (mode 0600), reused across
//!   restarts and replaced when the homeserver answers `M_UNKNOWN_TOKEN`;
//! - else there is no account: every action says so, naming both files.
//!
//! The account must be one of the hive's operators (`operators.users`): anyone else's ✅ would
//! not count, so it is refused here, before anything is sent. The files' `user_id` is not taken
//! on trust: when a session is made, the homeserver is asked whose token it is
//! (`/account/whoami`) and a token of anyone else is refused ([`same_account`]), naming the
//! file. A `web-operator.json` that others may read is warned about, once. Tokens are never logged: the
//! client's `Debug` redacts them and no span records them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use ruma::api::client::{
    account::whoami, membership::join_room_by_id, message::send_message_event, session::login,
};
use ruma::events::MessageLikeEventType;
use ruma::serde::Raw;
use ruma::{
    OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::homeserver::OperatorCredentials;
use crate::matrix::{AsClient, MatrixError};

/// The device the console logs in as (one device, whatever the number of restarts).
pub const DEVICE_ID: &str = "HIVE_WEB_CONSOLE";

/// `<data>/web-operator.json`: an access token the operator gives the console.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("web-operator.json")
}

/// `<data>/web-operator-session.json`: the console's own login, kept across restarts.
pub fn session_file(data_dir: &Path) -> PathBuf {
    data_dir.join("web-operator-session.json")
}

/// The operator-written `web-operator.json`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenFile {
    pub user_id: String,
    pub access_token: String,
}

/// The console's saved login (`web-operator-session.json`).
#[derive(Clone, Serialize, Deserialize)]
struct SavedSession {
    user_id: String,
    device_id: String,
    access_token: String,
}

/// The access tokens the console's files hold, labelled, for the secret filter
/// (`c0re/secrets.rs`). A file that cannot be read is logged, not guarded.
pub fn known_tokens(data_dir: &Path) -> Vec<(String, String)> {
    let mut known = Vec::new();
    match read_json::<TokenFile>(&token_file(data_dir)) {
        Ok(Some(t)) => known.push(("the web console's operator token".into(), t.access_token)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "the console's token is not guarded"),
    }
    match read_json::<SavedSession>(&session_file(data_dir)) {
        Ok(Some(s)) => known.push(("the web console's operator session".into(), s.access_token)),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "the console's session is not guarded"),
    }
    known.retain(|(_, t)| !t.is_empty());
    known
}

/// Who the console acts as, and how it gets a token.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// `operator.json`: log in with the password.
    Password { user: OwnedUserId, password: String },
    /// `web-operator.json`: the operator's own token.
    Token {
        user: OwnedUserId,
        access_token: String,
    },
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { user, .. } => write!(f, "Password({user})"),
            Self::Token { user, .. } => write!(f, "Token({user})"),
        }
    }
}

impl Identity {
    pub fn user(&self) -> &OwnedUserId {
        match self {
            Self::Password { user, .. } | Self::Token { user, .. } => user,
        }
    }
}

/// Why the console has no account to act as (said in every action's answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoOperator {
    #[error(
        "the console has no operator account: neither {token} (write {{\"user_id\": …, \"access_token\": …}} there) nor {creds} (`hive up` writes it) exists"
    )]
    Missing { token: String, creds: String },
    #[error("{file} names {value:?}, which is not a Matrix user id")]
    BadUser { file: String, value: String },
    #[error(
        "{user} is not one of the hive's operators (operators.users in hive.toml): its reactions would not count"
    )]
    NotOperator { user: OwnedUserId },
}

/// Who the console acts as (module doc): `token` is `web-operator.json`, `creds` is
/// `operator.json`, as read (`None`: no such file); `files` their paths for the messages.
pub fn identity(
    token: Option<TokenFile>,
    creds: Option<OperatorCredentials>,
    operators: &[OwnedUserId],
    files: (&Path, &Path),
) -> Result<Identity, NoOperator> {
    let parse = |value: &str, file: &Path| {
        OwnedUserId::try_from(value).map_err(|_| NoOperator::BadUser {
            file: file.display().to_string(),
            value: value.to_owned(),
        })
    };
    let id = match (token, creds) {
        (Some(t), _) => Identity::Token {
            user: parse(&t.user_id, files.0)?,
            access_token: t.access_token,
        },
        (None, Some(c)) => Identity::Password {
            user: parse(&c.user_id, files.1)?,
            password: c.password,
        },
        (None, None) => {
            return Err(NoOperator::Missing {
                token: files.0.display().to_string(),
                creds: files.1.display().to_string(),
            });
        }
    };
    if !operators.contains(id.user()) {
        return Err(NoOperator::NotOperator {
            user: id.user().clone(),
        });
    }
    Ok(id)
}

/// What acting as the operator failed on.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    NoOperator(#[from] NoOperator),
    #[error("cannot log in as {user}: {source}")]
    Login {
        user: OwnedUserId,
        source: MatrixError,
    },
    #[error(
        "the homeserver refused the access token in {file} ({source}): write a fresh one there"
    )]
    TokenRefused { file: String, source: MatrixError },
    #[error("cannot join {room} as the operator: {source}")]
    Join {
        room: OwnedRoomId,
        source: MatrixError,
    },
    #[error(
        "{file} names {named}, but the homeserver says its access token is {actual}'s: the console does not act as anyone but the named operator"
    )]
    NotTheirToken {
        file: String,
        named: OwnedUserId,
        actual: OwnedUserId,
    },
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    #[error("{0:#}")]
    Local(anyhow::Error),
}

/// Whether the token's owner as the homeserver answers (`actual`) is the account the file
/// `file` names (`named`): the console acts only as the account it was given.
pub fn same_account(named: &UserId, actual: &UserId, file: &Path) -> Result<(), OperatorError> {
    if named == actual {
        return Ok(());
    }
    Err(OperatorError::NotTheirToken {
        file: file.display().to_string(),
        named: named.to_owned(),
        actual: actual.to_owned(),
    })
}

/// Whether a file's `mode` lets anyone but its owner read or write it.
pub fn open_to_others(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// A logged-in operator: who, and a client carrying its token.
#[derive(Clone)]
struct Session {
    user: OwnedUserId,
    client: AsClient,
    /// From `web-operator.json` (cannot log in again).
    given: bool,
    /// The account as the files named it when this session began.
    identity: Identity,
}

/// The operator's account for the console: logs in on first use, sends events as it.
pub struct OperatorAccount {
    homeserver: Url,
    data_dir: PathBuf,
    operators: Vec<OwnedUserId>,
    session: tokio::sync::Mutex<Option<Session>>,
    /// Rooms the account is known to be in (joined by the console or found joined).
    joined: Mutex<HashSet<OwnedRoomId>>,
    /// `web-operator.json`'s mode was warned about (once a run).
    warned_mode: AtomicBool,
}

impl OperatorAccount {
    pub fn new(homeserver: &Url, data_dir: &Path, operators: &[OwnedUserId]) -> Self {
        Self {
            homeserver: homeserver.clone(),
            data_dir: data_dir.to_owned(),
            operators: operators.to_vec(),
            session: tokio::sync::Mutex::new(None),
            joined: Mutex::new(HashSet::new()),
            warned_mode: AtomicBool::new(false),
        }
    }

    /// The operator's user id (logging in if needed).
    pub async fn user(&self) -> Result<OwnedUserId, OperatorError> {
        Ok(self.session().await?.user)
    }

    /// Who the console would act as, from the files as they are now (no network).
    pub fn identity(&self) -> Result<Identity, OperatorError> {
        let (t, c) = (
            token_file(&self.data_dir),
            OperatorCredentials::path(&self.data_dir),
        );
        let token: Option<TokenFile> = read_json(&t).map_err(OperatorError::Local)?;
        let creds = OperatorCredentials::load(&self.data_dir).map_err(OperatorError::Local)?;
        Ok(identity(token, creds, &self.operators, (&t, &c))?)
    }

    /// The logged-in session for the account the files name now: a file the operator wrote or
    /// changed since is followed at the next action, without a restart.
    async fn session(&self) -> Result<Session, OperatorError> {
        let id = self.identity()?;
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| s.identity == id) {
            return Ok(s.clone());
        }
        // Until the new one is checked, no session: a refusal below is about the new one.
        *slot = None;
        let (s, file) = match &id {
            Identity::Token { user, access_token } => {
                self.warn_if_open();
                let s = Session {
                    user: user.clone(),
                    client: self.client(access_token.clone())?,
                    given: true,
                    identity: id.clone(),
                };
                (s, token_file(&self.data_dir))
            }
            Identity::Password { user, password } => (
                self.login(user.clone(), password).await?,
                session_file(&self.data_dir),
            ),
        };
        // Whose token it is, as the homeserver knows it. A saved login it no longer knows is
        // an `M_UNKNOWN_TOKEN` the send path answers by logging in again; the operator's own
        // token cannot be replaced: the file to rewrite is named.
        let actual = match s.client.send(whoami::v3::Request::new(), None).await {
            Ok(r) => r.user_id,
            Err(source) if s.given && source.errcode() == Some("M_UNKNOWN_TOKEN") => {
                return Err(OperatorError::TokenRefused {
                    file: file.display().to_string(),
                    source,
                });
            }
            Err(e) => return Err(e.into()),
        };
        same_account(&s.user, &actual, &file)?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Warns, once, when `web-operator.json` is open to others (it holds a token that acts as
    /// the operator).
    fn warn_if_open(&self) {
        use std::os::unix::fs::PermissionsExt;
        let path = token_file(&self.data_dir);
        let mode = match std::fs::metadata(&path) {
            Ok(m) => m.permissions().mode(),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot read the token file's mode");
                return;
            }
        };
        if open_to_others(mode) && !self.warned_mode.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the web console's operator token file is readable by others: chmod 600 it"
            );
        }
    }

    /// The saved login if it is this user's, else a new one (saved, mode 0600).
    async fn login(&self, user: OwnedUserId, password: &str) -> Result<Session, OperatorError> {
        let path = session_file(&self.data_dir);
        let saved: Option<SavedSession> = read_json(&path).map_err(OperatorError::Local)?;
        if let Some(s) = saved.filter(|s| s.user_id == user.as_str()) {
            return Ok(Session {
                identity: Identity::Password {
                    user: user.clone(),
                    password: password.to_owned(),
                },
                user,
                client: self.client(s.access_token)?,
                given: false,
            });
        }
        let mut req =
            login::v3::Request::new(login::v3::LoginInfo::Password(login::v3::Password::new(
                ruma::api::client::uiaa::UserIdentifier::Matrix(
                    ruma::api::client::uiaa::MatrixUserIdentifier::new(user.to_string()),
                ),
                password.to_owned(),
            )));
        req.device_id = Some(OwnedDeviceId::from(DEVICE_ID));
        req.initial_device_display_name = Some("hive web console".into());
        let resp = self
            .client(String::new())?
            .send(req, None)
            .await
            .map_err(|source| OperatorError::Login {
                user: user.clone(),
                source,
            })?;
        let saved = SavedSession {
            user_id: resp.user_id.to_string(),
            device_id: resp.device_id.to_string(),
            access_token: resp.access_token,
        };
        let bytes = serde_json::to_vec_pretty(&saved)
            .map_err(|e| OperatorError::Local(anyhow::Error::new(e)))?;
        crate::fsutil::write_private(&path, &bytes).map_err(OperatorError::Local)?;
        tracing::info!(user = %user, device = DEVICE_ID, "the web console logged in as the operator");
        Ok(Session {
            identity: Identity::Password {
                user: user.clone(),
                password: password.to_owned(),
            },
            user,
            client: self.client(saved.access_token)?,
            given: false,
        })
    }

    fn client(&self, token: String) -> Result<AsClient, OperatorError> {
        AsClient::for_user(&self.homeserver, token).map_err(OperatorError::Local)
    }

    /// The homeserver no longer knows the token: forget it (and the saved file), so the next
    /// call logs in again. `Err` when the token was the operator's own (nothing to log in with).
    async fn token_refused(&self, source: MatrixError) -> Result<(), OperatorError> {
        let mut slot = self.session.lock().await;
        let given = slot.as_ref().is_some_and(|s| s.given);
        *slot = None;
        if given {
            return Err(OperatorError::TokenRefused {
                file: token_file(&self.data_dir).display().to_string(),
                source,
            });
        }
        let path = session_file(&self.data_dir);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(OperatorError::Local(
                anyhow::Error::new(e).context(format!("cannot remove {}", path.display())),
            ));
        }
        tracing::info!("the web console's operator token was refused; logging in again");
        Ok(())
    }

    /// Sends one event of type `kind` into `room` as the operator, with transaction id `txn`:
    /// joins the room first (the operator is invited to every hive room) and logs in again
    /// once if the token was refused.
    pub async fn send(
        &self,
        room: &RoomId,
        kind: MessageLikeEventType,
        content: &serde_json::Value,
        txn: &str,
    ) -> Result<OwnedEventId, OperatorError> {
        let raw = serde_json::value::to_raw_value(content)
            .map_err(|e| OperatorError::Local(anyhow::Error::new(e)))?;
        let mut relogged = false;
        loop {
            // A saved login whoami no longer knows: logged in again, once.
            let s = match self.session().await.map_err(unknown_token) {
                Ok(s) => s,
                Err(Err(source)) if !relogged => {
                    relogged = true;
                    self.token_refused(source).await?;
                    continue;
                }
                Err(Err(source)) => return Err(OperatorError::Matrix(source)),
                Err(Ok(e)) => return Err(e),
            };
            let r = async {
                self.join(&s, room).await?;
                let req = send_message_event::v3::Request::new_raw(
                    room.to_owned(),
                    OwnedTransactionId::from(txn.to_owned()),
                    kind.clone(),
                    Raw::from_json(raw.clone()),
                );
                Ok::<_, OperatorError>(s.client.send(req, None).await?.event_id)
            }
            .await;
            match r.map_err(unknown_token) {
                Err(Err(source)) if !relogged => {
                    relogged = true;
                    self.token_refused(source).await?;
                }
                Err(Err(source)) => return Err(OperatorError::Matrix(source)),
                Err(Ok(e)) => return Err(e),
                Ok(ev) => return Ok(ev),
            }
        }
    }

    /// Joins `room` unless the account is known to be in it (joining a joined room is fine).
    async fn join(&self, s: &Session, room: &RoomId) -> Result<(), OperatorError> {
        if self.joined_lock().contains(room) {
            return Ok(());
        }
        s.client
            .send(join_room_by_id::v3::Request::new(room.to_owned()), None)
            .await
            .map_err(|source| OperatorError::Join {
                room: room.to_owned(),
                source,
            })?;
        self.joined_lock().insert(room.to_owned());
        Ok(())
    }

    fn joined_lock(&self) -> std::sync::MutexGuard<'_, HashSet<OwnedRoomId>> {
        self.joined.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Err(the homeserver's answer)` when it said it does not know the token, else `Ok(e)`.
fn unknown_token(e: OperatorError) -> Result<OperatorError, MatrixError> {
    match e {
        OperatorError::Matrix(m) | OperatorError::Join { source: m, .. }
            if m.errcode() == Some("M_UNKNOWN_TOKEN") =>
        {
            Err(m)
        }
        other => Ok(other),
    }
}

/// A JSON file, or `None` when there is none.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("{} is not valid JSON of the expected shape", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_acts_as_a_configured_operator() {
        struct Case {
            name: &'static str,
            token: Option<(&'static str, &'static str)>,
            creds: Option<&'static str>,
            /// `Ok(("token" | "password", user))` or `Err(a piece of the message)`.
            want: Result<(&'static str, &'static str), &'static str>,
        }
        let cases = [
            Case {
                name: "hive up's operator logs in with its password",
                token: None,
                creds: Some("@operator:hive.test"),
                want: Ok(("password", "@operator:hive.test")),
            },
            Case {
                name: "a token the operator wrote wins",
                token: Some(("@operator:hive.test", "syt_x")),
                creds: Some("@operator:hive.test"),
                want: Ok(("token", "@operator:hive.test")),
            },
            Case {
                name: "a token alone (hive c0re on an existing homeserver)",
                token: Some(("@operator:hive.test", "syt_x")),
                creds: None,
                want: Ok(("token", "@operator:hive.test")),
            },
            Case {
                name: "nothing: both files named",
                token: None,
                creds: None,
                want: Err("neither /d/web-operator.json"),
            },
            Case {
                name: "a token of someone who is not an operator",
                token: Some(("@mallory:hive.test", "syt_x")),
                creds: None,
                want: Err("@mallory:hive.test is not one of the hive's operators"),
            },
            Case {
                name: "a user id that is none",
                token: Some(("operator", "syt_x")),
                creds: None,
                want: Err("/d/web-operator.json names \"operator\""),
            },
        ];
        let operators = vec![OwnedUserId::try_from("@operator:hive.test").unwrap()];
        let files = (
            Path::new("/d/web-operator.json"),
            Path::new("/d/operator.json"),
        );
        for c in cases {
            let token = c.token.map(|(u, t)| TokenFile {
                user_id: u.into(),
                access_token: t.into(),
            });
            let creds = c.creds.map(|u| OperatorCredentials {
                homeserver: "http://127.0.0.1:1".into(),
                user_id: u.into(),
                password: "pw".into(),
            });
            let got = identity(token, creds, &operators, files);
            match (got, c.want) {
                (Ok(id), Ok((how, user))) => {
                    let got_how = match id {
                        Identity::Password { .. } => "password",
                        Identity::Token { .. } => "token",
                    };
                    assert_eq!((got_how, id.user().as_str()), (how, user), "{}", c.name);
                }
                (Err(e), Err(piece)) => {
                    assert!(e.to_string().contains(piece), "{}: {e}", c.name)
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
    }

    /// A token is the named operator's only when the homeserver says so; a token file is
    /// private only at mode 0600 (or stricter).
    #[test]
    fn the_token_is_the_named_operators() {
        struct Case {
            name: &'static str,
            named: &'static str,
            actual: &'static str,
            /// `None`: accepted; else a piece of the refusal.
            refused: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "the operator's own token",
                named: "@operator:hive.test",
                actual: "@operator:hive.test",
                refused: None,
            },
            Case {
                name: "someone else's token under the operator's name",
                named: "@operator:hive.test",
                actual: "@mallory:hive.test",
                refused: Some(
                    "/d/web-operator.json names @operator:hive.test, but the homeserver says its access token is @mallory:hive.test's",
                ),
            },
        ];
        for c in cases {
            let named = OwnedUserId::try_from(c.named).unwrap();
            let actual = OwnedUserId::try_from(c.actual).unwrap();
            let got = same_account(&named, &actual, Path::new("/d/web-operator.json"));
            match (got, c.refused) {
                (Ok(()), None) => {}
                (Err(e), Some(piece)) => assert!(e.to_string().contains(piece), "{}: {e}", c.name),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", c.name),
            }
        }
        for (mode, open) in [
            (0o100600, false),
            (0o100400, false),
            (0o100640, true),
            (0o100644, true),
            (0o100602, true),
        ] {
            assert_eq!(open_to_others(mode), open, "{mode:o}");
        }
    }

    /// Neither the password nor the token shows in a debug line.
    #[test]
    fn identities_debug_without_their_secret() {
        let user = OwnedUserId::try_from("@operator:hive.test").unwrap();
        let shown = format!(
            "{:?} {:?}",
            Identity::Password {
                user: user.clone(),
                password: "hunter2".into()
            },
            Identity::Token {
                user,
                access_token: "syt_secret".into()
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("syt_secret"),
            "{shown}"
        );
    }
}
