//! `[web]` in `hive.toml`: where the core serves the operator's web console, and how long its
//! login links and sessions last, validated into [`WebConfig`].
//!
//! Rules (each refusal names its key):
//! - `web.listen` is a socket address; port `0` asks the system for a free port (the link
//!   names the port bound). It may not be the appservice's own address.
//! - `web.url` (the base URL the printed link uses) is `http` or `https`, has a host, no user
//!   info, query or fragment, and no path but `/` (the console's routes are at the root, and its
//!   cookie is `Path=/`). Default: `http://<listen>/`, and then the port bound.
//! - An `http` `web.url` must name a loopback host (`127.0.0.1`, `[::1]`, `localhost`).
//! - When `web.listen` is not loopback, `web.url` must be `https`: the session cookie and
//!   every form would otherwise cross a network in clear text (as `check_transport` refuses
//!   for the appservice). TLS is then put in front of `listen` by the operator.
//! - `web.link_ttl_secs` is 1 s to 1 day; `web.session_ttl_secs` 1 min to 90 days.

use std::net::SocketAddr;

use serde::Deserialize;
use url::Url;

use super::ConfigError;

/// The default address of the console.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8787";
/// How long a login link works, by default (15 minutes).
pub const DEFAULT_LINK_TTL_SECS: u64 = 900;
/// How long a session lasts, by default (12 hours: a working day, not a week of a cookie that
/// any local port could read on loopback).
pub const DEFAULT_SESSION_TTL_SECS: u64 = 12 * 3_600;

/// `[web]`: the operator's web console (served by the core, logged in by a one-time link).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Serve the console (default true).
    pub enabled: Option<bool>,
    /// Where the core listens for the browser (default `127.0.0.1:8787`; port 0: any free one).
    pub listen: Option<SocketAddr>,
    /// The base URL the login link uses (default `http://<listen>/`; `https` when `listen` is
    /// not loopback).
    pub url: Option<Url>,
    /// Seconds a login link works (default 900).
    pub link_ttl_secs: Option<u64>,
    /// Seconds a session lasts once logged in (default 12 h).
    pub session_ttl_secs: Option<u64>,
}

/// The validated `[web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// `web.url` as written; `None`: `http://<the address bound>/` (see [`WebConfig::base_url`]).
    pub url: Option<Url>,
    pub link_ttl_secs: u64,
    pub session_ttl_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: DEFAULT_WEB_LISTEN.parse().expect("a valid literal address"),
            url: None,
            link_ttl_secs: DEFAULT_LINK_TTL_SECS,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
        }
    }
}

impl WebConfig {
    /// The console's base URL once `bound` is the address its listener got: `web.url`, else
    /// `http://<bound>/` (so port 0 yields the real port).
    pub fn base_url(&self, bound: SocketAddr) -> Url {
        self.url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{bound}/")).expect("a socket address makes a valid url")
        })
    }

    /// The console in one line (`hive check`).
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "web console        off (web.enabled = false)\n".into();
        }
        let url = self
            .url
            .as_ref()
            .map_or_else(|| format!("http://{}/", self.listen), Url::to_string);
        format!(
            "web console        {url} (listening on {}); login links work once for {}, sessions last {}\n",
            self.listen,
            crate::c0re::web::session::human_secs(self.link_ttl_secs),
            crate::c0re::web::session::human_secs(self.session_ttl_secs),
        )
    }
}

/// Validates `[web]`, pushing every error into `errs`. `appservice` is the appservice's own
/// listen address (the console may not take it).
pub(super) fn validate(
    raw: RawWeb,
    appservice: SocketAddr,
    errs: &mut Vec<ConfigError>,
) -> WebConfig {
    let mut err = |key: &'static str, message: String| {
        errs.push(ConfigError {
            key: key.into(),
            message,
        })
    };
    let d = WebConfig::default();
    let listen = raw.listen.unwrap_or(d.listen);
    if listen.port() != 0 && listen == appservice {
        err(
            "web.listen",
            format!("{listen} is appservice.listen: the console needs an address of its own"),
        );
    }
    if let Some(url) = &raw.url {
        if !matches!(url.scheme(), "http" | "https") {
            err("web.url", format!("{url} is not an http(s) URL"));
        } else if url.host().is_none() {
            err("web.url", format!("{url} has no host"));
        } else if !url.username().is_empty() || url.password().is_some() {
            err("web.url", format!("{url} may not hold user info"));
        } else if url.query().is_some() || url.fragment().is_some() {
            err("web.url", format!("{url} may not have a query or fragment"));
        } else if url.path() != "/" {
            err(
                "web.url",
                format!("{url}: the console is served at the root of its URL (path `/`)"),
            );
        } else if url.scheme() == "http" && !crate::config::is_loopback_url(url) {
            err(
                "web.url",
                format!(
                    "{url} is plain http to a host that is not loopback: use https (the session cookie must not cross a network in clear text)"
                ),
            );
        }
    }
    let https = raw.url.as_ref().is_some_and(|u| u.scheme() == "https");
    if !listen.ip().is_loopback() && !https {
        err(
            "web.url",
            format!(
                "web.listen {listen} is not loopback: put TLS in front of it and set web.url to https (the session cookie must not cross a network in clear text)"
            ),
        );
    }
    let link_ttl_secs = raw.link_ttl_secs.unwrap_or(d.link_ttl_secs);
    if !(1..=86_400).contains(&link_ttl_secs) {
        err(
            "web.link_ttl_secs",
            format!("{link_ttl_secs} must be 1 to 86400 (a day)"),
        );
    }
    let session_ttl_secs = raw.session_ttl_secs.unwrap_or(d.session_ttl_secs);
    if !(60..=90 * 86_400).contains(&session_ttl_secs) {
        err(
            "web.session_ttl_secs",
            format!("{session_ttl_secs} must be 60 to 7776000 (90 days)"),
        );
    }
    WebConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        listen,
        url: raw.url,
        link_ttl_secs,
        session_ttl_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_table() {
        struct Case {
            name: &'static str,
            toml: &'static str,
            /// The key of the error, or `None` for a valid table.
            refused: Option<&'static str>,
        }
        let cases = [
            Case {
                name: "defaults",
                toml: "",
                refused: None,
            },
            Case {
                name: "loopback on any port",
                toml: "listen = \"127.0.0.1:0\"",
                refused: None,
            },
            Case {
                name: "ipv6 loopback",
                toml: "listen = \"[::1]:8787\"",
                refused: None,
            },
            Case {
                name: "not loopback, no url",
                toml: "listen = \"0.0.0.0:8787\"",
                refused: Some("web.url"),
            },
            Case {
                name: "not loopback, plain http",
                toml: "listen = \"10.0.0.5:8787\"\nurl = \"http://hive.example.org/\"",
                refused: Some("web.url"),
            },
            Case {
                name: "not loopback behind https",
                toml: "listen = \"10.0.0.5:8787\"\nurl = \"https://hive.example.org/\"",
                refused: None,
            },
            Case {
                name: "loopback listen, plain http to another host",
                toml: "url = \"http://hive.example.org:8787/\"",
                refused: Some("web.url"),
            },
            Case {
                name: "plain http to localhost",
                toml: "url = \"http://localhost:8787/\"",
                refused: None,
            },
            Case {
                name: "a path prefix",
                toml: "url = \"https://example.org/hive/\"",
                refused: Some("web.url"),
            },
            Case {
                name: "user info",
                toml: "url = \"https://me:pw@example.org/\"",
                refused: Some("web.url"),
            },
            Case {
                name: "a query",
                toml: "url = \"http://127.0.0.1:8787/?a=b\"",
                refused: Some("web.url"),
            },
            Case {
                name: "not http",
                toml: "url = \"ftp://127.0.0.1/\"",
                refused: Some("web.url"),
            },
            Case {
                name: "the appservice's address",
                toml: "listen = \"127.0.0.1:8009\"",
                refused: Some("web.listen"),
            },
            Case {
                name: "a link that never works",
                toml: "link_ttl_secs = 0",
                refused: Some("web.link_ttl_secs"),
            },
            Case {
                name: "a link for a week",
                toml: "link_ttl_secs = 604800",
                refused: Some("web.link_ttl_secs"),
            },
            Case {
                name: "a session of a second",
                toml: "session_ttl_secs = 1",
                refused: Some("web.session_ttl_secs"),
            },
        ];
        let appservice: SocketAddr = "127.0.0.1:8009".parse().unwrap();
        for c in cases {
            let raw: RawWeb = toml::from_str(c.toml).expect(c.name);
            let mut errs = Vec::new();
            let cfg = validate(raw, appservice, &mut errs);
            match c.refused {
                None => assert!(errs.is_empty(), "{}: {errs:?}", c.name),
                Some(key) => assert!(
                    errs.iter().any(|e| e.key == key),
                    "{}: wanted an error on {key}, got {errs:?} for {cfg:?}",
                    c.name
                ),
            }
        }
    }

    #[test]
    fn the_base_url_names_the_port_bound() {
        let d = WebConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..WebConfig::default()
        };
        let bound: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(d.base_url(bound).as_str(), "http://127.0.0.1:40123/");
        let behind = WebConfig {
            url: Some(Url::parse("https://hive.example.org/").unwrap()),
            ..d
        };
        assert_eq!(behind.base_url(bound).as_str(), "https://hive.example.org/");
        assert!(WebConfig::default().describe().contains("15 min"));
    }
}
