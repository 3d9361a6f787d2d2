//! Logging the operator in: one-time login links, the session cookie, the CSRF token, and
//! the checks every request passes (its `Host`, a post's `Origin` and token).
//!
//! Rules:
//! - A token (a link's or a session's) is 32 bytes from the OS CSPRNG, base64url: 256 bits
//!   nobody guesses. The store keeps only its digest, HMAC-SHA1 under the hive's own key
//!   (`<data>/web/key`, 0600): a copy of the database alone opens nothing, and nobody can
//!   test a guess against it. (HMAC over SHA-1 is a sound PRF; SHA-1's collisions do not
//!   touch it, and `hmac`/`sha1` are already in the tree for Synapse's registration.)
//! - A link works once, until `web.link_ttl_secs` after it was made ([`decide_login`]); the
//!   use and the session it opens are one conditional write, so two uses cannot both win.
//! - A session lasts `web.session_ttl_secs` from its login ([`session_valid`]); logging out
//!   ends it. Its CSRF token is derived from the session token under the key (nothing more
//!   to store, and it changes with every session).
//! - A post must carry that CSRF token in `X-CSRF-Token` or in the form field `csrf`; every
//!   token presented must match (constant time) and at least one must be there
//!   ([`check_post`]).
//! - `Host` must name the console itself: its URL's host, or (served on loopback) a loopback
//!   literal with the port bound, so a page on another name that resolves to 127.0.0.1 (DNS
//!   rebinding) reaches nothing. A post's `Origin`, when the browser sends one, must be ours
//!   ([`Site`]).
//! - No token is ever logged by `tracing`; the link is printed on stderr (the operator's
//!   terminal, or the journal of a service manager running the hive, which keeps it: it
//!   expires and works once).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use url::Url;

use crate::store::{Store, WebLink, WebSession};

/// The session cookie's name over plain http (loopback only).
pub const COOKIE: &str = "hive_session";
/// The session cookie's name over https: the `__Host-` prefix makes the browser refuse it
/// unless it is `Secure`, `Path=/` and has no `Domain`, so no other host (or plain-http page)
/// can plant or widen it.
pub const COOKIE_HTTPS: &str = "__Host-hive_session";

/// The session cookie's name when served over https (`secure`) or not.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { COOKIE_HTTPS } else { COOKIE }
}

/// The session's CSRF token, put into each request's extensions by the auth layer so that a
/// page can put it into its forms (`Extension<Csrf>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Csrf(pub String);

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf(<redacted>)")
    }
}

/// A fresh token: 32 bytes from the OS CSPRNG, base64url without padding (43 characters).
pub fn mint_token() -> anyhow::Result<String> {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("the OS random number generator failed")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The hive's key for the tokens' digests. `Debug` never shows it.
#[derive(Clone)]
pub struct Key(Arc<[u8]>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// What a digest is of: the same token never means two things.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Link,
    Session,
    Csrf,
}

impl Key {
    /// Where the key lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("web").join("key")
    }

    /// Reads the key, making it (once) on first use.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                tighten(&path)?;
                Self::from_text(text.trim())
                    .with_context(|| format!("{} is not a console key", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    crate::fsutil::private_dir(dir)?;
                }
                let text = mint_token()?;
                crate::fsutil::write_private(&path, text.as_bytes())?;
                Self::from_text(&text)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn from_text(text: &str) -> anyhow::Result<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)?;
        anyhow::ensure!(
            bytes.len() >= 32,
            "the key is {} bytes, fewer than 32",
            bytes.len()
        );
        Ok(Self(bytes.into()))
    }

    /// A key of these bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }

    fn mac(&self, purpose: Purpose, token: &str) -> Vec<u8> {
        let mut mac =
            Hmac::<sha1::Sha1>::new_from_slice(&self.0).expect("hmac takes any key length");
        mac.update(match purpose {
            Purpose::Link => b"hive web link\0",
            Purpose::Session => b"hive web session\0",
            Purpose::Csrf => b"hive web csrf\0",
        });
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The stored digest of a link's token.
    pub fn link_digest(&self, token: &str) -> String {
        hex(&self.mac(Purpose::Link, token))
    }

    /// The stored digest of a session's token.
    pub fn session_digest(&self, token: &str) -> String {
        hex(&self.mac(Purpose::Session, token))
    }

    /// The CSRF token of the session whose token is `session`.
    pub fn csrf(&self, session: &str) -> Csrf {
        Csrf(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(self.mac(Purpose::Csrf, session)),
        )
    }
}

/// Makes an existing key file `0600` when others could read or write it (a copy made by hand,
/// a restored backup), and says so.
fn tighten(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).with_context(
            || {
                format!(
                    "{} is readable by others (mode {:o}) and cannot be made 0600",
                    path.display(),
                    mode & 0o777
                )
            },
        )?;
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the console key was readable by others: made it 0600 (mint new links: \
             old ones may have been seen)"
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What following a login link comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The link is unused and unexpired: log in.
    Granted,
    /// It was followed before.
    Used,
    /// Its time is up.
    Expired,
    /// No such link was ever made (or it is long forgotten).
    Unknown,
}

impl Login {
    /// Why a refused link is refused, for the page and the audit.
    pub fn why(self) -> &'static str {
        match self {
            Login::Granted => "logged in",
            Login::Used => "this link was already used: a link works once",
            Login::Expired => "this link has expired",
            Login::Unknown => "this link is not one the hive made",
        }
    }
}

/// Whether the link `link` (as recorded, `None`: none) logs in at `now_us`. A used link is
/// `Used` even after its expiry, as long as it is remembered.
pub fn decide_login(link: Option<&WebLink>, now_us: i64) -> Login {
    match link {
        None => Login::Unknown,
        Some(l) if l.used_us.is_some() => Login::Used,
        Some(l) if now_us >= l.expires_us => Login::Expired,
        Some(_) => Login::Granted,
    }
}

/// Whether the session `session` (as recorded, `None`: none) is open at `now_us`.
pub fn session_valid(session: Option<&WebSession>, now_us: i64) -> bool {
    session.is_some_and(|s| now_us < s.expires_us)
}

/// What a post's CSRF tokens come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Neither the header nor the field carries a token.
    Missing,
    /// A token is there, and is not the session's.
    Wrong,
}

impl Verdict {
    /// The refusal's message (the page shows it as a toast).
    pub fn message(self) -> &'static str {
        match self {
            Verdict::Accepted => "ok",
            Verdict::Missing => "refused: the form carries no csrf token (reload the page)",
            Verdict::Wrong => "refused: the csrf token is not this session's (reload the page)",
        }
    }
}

/// Whether a post carries the session's CSRF token: `header` (`X-CSRF-Token`) and `field`
/// (the form's `csrf`), each if present. Every token presented must match; one must be there.
pub fn check_post(expected: &Csrf, header: Option<&str>, field: Option<&str>) -> Verdict {
    let presented: Vec<&str> = [header, field].into_iter().flatten().collect();
    if presented.is_empty() {
        return Verdict::Missing;
    }
    let all_match = presented
        .iter()
        .all(|t| bool::from(t.as_bytes().ct_eq(expected.0.as_bytes())));
    if all_match {
        Verdict::Accepted
    } else {
        Verdict::Wrong
    }
}

/// Where the console is served: what `Host` and `Origin` may say, whether cookies are `Secure`.
#[derive(Debug, Clone)]
pub struct Site {
    /// The base URL the link uses.
    pub base: Url,
    /// Served over https: the cookie is `Secure`.
    pub secure: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Site {
    /// The console at `base`, its listener bound to `bound`.
    pub fn new(base: &Url, bound: SocketAddr) -> Self {
        let mut hosts = Vec::new();
        let mut origins = vec![base.origin().ascii_serialization()];
        if let Some(h) = base.host_str() {
            let h = h.to_ascii_lowercase();
            match base.port() {
                Some(p) => hosts.push(format!("{h}:{p}")),
                None => {
                    hosts.push(h.clone());
                    if let Some(p) = base.port_or_known_default() {
                        hosts.push(format!("{h}:{p}"));
                    }
                }
            }
        }
        if bound.ip().is_loopback() {
            let port = bound.port();
            for lit in ["127.0.0.1", "localhost", "[::1]"] {
                hosts.push(format!("{lit}:{port}"));
                origins.push(format!("http://{lit}:{port}"));
                if port == 80 {
                    hosts.push(lit.to_owned());
                    origins.push(format!("http://{lit}"));
                }
            }
        }
        hosts.dedup();
        origins.dedup();
        Self {
            base: base.clone(),
            secure: base.scheme() == "https",
            hosts,
            origins,
        }
    }

    /// Whether a request's `Host` names the console (none: refused).
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        host.is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h.trim())))
    }

    /// Whether a post's `Origin` is ours; a request without one (not a browser's cross-site
    /// post: browsers send it on every cross-origin post) is left to the CSRF token.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        origin.is_none_or(|o| {
            self.origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o.trim()))
        })
    }

    /// The login link for `token`.
    pub fn login_url(&self, token: &str) -> Url {
        let mut url = self.base.join("login").expect("a base url joins a path");
        url.query_pairs_mut().append_pair("token", token);
        url
    }
}

/// The `Set-Cookie` value that opens a session for `max_age_secs`.
pub fn set_cookie(token: &str, secure: bool, max_age_secs: u64) -> String {
    format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that forgets the session.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", secure, 0)
}

/// The value of the cookie `name` among `Cookie` header values.
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A span of seconds for people: `45 s`, `1 min 30 s`, `15 min`, `2 h`, `7 days`.
pub fn human_secs(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => match s / 86_400 {
            1 => "1 day".into(),
            d => format!("{d} days"),
        },
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// The console's links and sessions: the key, the store, the lifetimes. The pure rules above
/// decide; this reads and writes.
#[derive(Clone)]
pub struct Sessions {
    key: Key,
    store: Store,
    link_ttl_us: i64,
    session_ttl_secs: u64,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("link_ttl_us", &self.link_ttl_us)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// What [`Sessions::login`] did. `Debug` never shows the session's token.
pub enum LoginResult {
    /// A session was opened: its token goes into the cookie.
    Opened {
        session: String,
    },
    Refused(Login),
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginResult::Opened { .. } => f.write_str("Opened { session: <redacted> }"),
            LoginResult::Refused(why) => f.debug_tuple("Refused").field(why).finish(),
        }
    }
}

impl Sessions {
    pub fn new(key: Key, store: Store, link_ttl_secs: u64, session_ttl_secs: u64) -> Self {
        Self {
            key,
            store,
            link_ttl_us: i64::try_from(link_ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX),
            session_ttl_secs,
        }
    }

    /// How long a session lasts.
    pub fn session_ttl_secs(&self) -> u64 {
        self.session_ttl_secs
    }

    /// Makes a new login link's token (recorded by its digest only).
    pub fn mint_link(&self, now_us: i64) -> anyhow::Result<String> {
        let token = mint_token()?;
        self.store.web_link_insert(
            &self.key.link_digest(&token),
            now_us,
            now_us.saturating_add(self.link_ttl_us),
        )?;
        Ok(token)
    }

    /// Follows the link `token` at `now_us`: opens a session, or says why not.
    pub fn login(&self, token: &str, now_us: i64) -> anyhow::Result<LoginResult> {
        let digest = self.key.link_digest(token);
        let decision = decide_login(self.store.web_link(&digest)?.as_ref(), now_us);
        if decision != Login::Granted {
            return Ok(LoginResult::Refused(decision));
        }
        let session = mint_token()?;
        let ttl_us =
            i64::try_from(self.session_ttl_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        if self.store.web_login(
            &digest,
            &self.key.session_digest(&session),
            now_us,
            now_us.saturating_add(ttl_us),
        )? {
            Ok(LoginResult::Opened { session })
        } else {
            // Another use won the race between the read and the write.
            Ok(LoginResult::Refused(Login::Used))
        }
    }

    /// The CSRF token of the open session `token`, or `None` when it is not one.
    pub fn session(&self, token: &str, now_us: i64) -> anyhow::Result<Option<Csrf>> {
        let row = self.store.web_session(&self.key.session_digest(token))?;
        Ok(session_valid(row.as_ref(), now_us).then(|| self.key.csrf(token)))
    }

    /// Ends the session `token` (logout).
    pub fn logout(&self, token: &str) -> anyhow::Result<bool> {
        self.store
            .web_session_close(&self.key.session_digest(token))
    }
}

#[cfg(test)]
mod tests;
