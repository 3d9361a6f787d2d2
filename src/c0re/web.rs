//! The web console: the hive at a glance in the operator's browser, served by the core on
//! loopback (or behind TLS), logged in by a one-time link that `hive up` prints.
//!
//! Matrix stays the record: every action the console takes is a Matrix event sent as the
//! operator's own account (a ✅ on a request, a `!hive` command, a message in an agent's room),
//! so the approval record, the power-level checks and the audit are the ones the rooms already
//! have. The console only reads the core's state and shows it live.
//!
//! - [`session`]: one-time login links, session cookies, CSRF tokens (pure checks, tables).
//! - [`live`]: the server-sent event stream; each change of the hive re-renders the panes and
//!   sends those whose markup changed.
//! - [`views`]: the pages and their panes (server-rendered with maud) and the stylesheet.
//! - [`actions`]: the forms' endpoints, acting as the operator on the homeserver.

pub mod actions;
pub mod live;
pub mod session;
pub mod views;

use serde::Serialize;

/// One region of a page the live stream replaces whole: the element's `id` and its markup
/// (whose outermost element carries that `id` and `data-pane`).
#[derive(Debug, Clone)]
pub struct Pane {
    pub id: String,
    pub html: maud::Markup,
}

/// What a form's post answers (JSON), shown by the page as a toast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
}

pub mod serve;

use std::sync::{Arc, OnceLock};

/// The console as it is served: where (its [`session::Site`]) and its logins
/// ([`session::Sessions`]). Made once its listener is bound.
#[derive(Debug)]
pub struct Served {
    pub site: session::Site,
    pub sessions: session::Sessions,
}

/// The core's handle on its web console: empty until the console is served (and for good
/// when `[web] enabled = false` or its address could not be bound).
#[derive(Debug, Default)]
pub struct Web {
    served: OnceLock<Arc<Served>>,
}

/// Why no login link can be made.
#[derive(Debug, thiserror::Error)]
pub enum NoLink {
    #[error(
        "the web console is not served (web.enabled = false, or its address could not be bound: see the core's log)"
    )]
    NotServed,
    #[error("the login link could not be made: {0:#}")]
    Failed(anyhow::Error),
}

impl Web {
    /// Records the console as served; `false` if it already was.
    pub fn set(&self, served: Arc<Served>) -> bool {
        self.served.set(served).is_ok()
    }

    /// The console as served, if it is.
    pub fn served(&self) -> Option<&Arc<Served>> {
        self.served.get()
    }

    /// A fresh one-time login link (`hive up` prints one, `hive console` asks for another).
    pub fn login_link(&self) -> Result<url::Url, NoLink> {
        let served = self.served().ok_or(NoLink::NotServed)?;
        let token = served
            .sessions
            .mint_link(crate::store::now_us())
            .map_err(NoLink::Failed)?;
        Ok(served.site.login_url(&token))
    }
}

/// The two lines that hand the operator a login link (stderr of `hive up`, stdout of
/// `hive console`); tests find the link after the second line's label.
pub fn link_lines(url: &url::Url, link_ttl_secs: u64, loopback: bool) -> String {
    format!(
        "hive: console ready. Open this link in a browser{} (it works once, for {}):\n{LINK_LABEL}{url}",
        if loopback { " on this machine" } else { "" },
        session::human_secs(link_ttl_secs),
    )
}

/// What precedes the link on its line.
pub const LINK_LABEL: &str = "        console     ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_lines() {
        let url = url::Url::parse("http://127.0.0.1:8787/login?token=t").unwrap();
        assert_eq!(
            link_lines(&url, 900, true),
            "hive: console ready. Open this link in a browser on this machine (it works once, for 15 min):\n        console     http://127.0.0.1:8787/login?token=t"
        );
        assert!(link_lines(&url, 60, false).contains("browser (it works once, for 1 min)"));
    }
}
