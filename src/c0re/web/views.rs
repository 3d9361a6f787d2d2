//! The console's pages: `GET /` (the hive at a glance) and `GET /agent/{name}` (one agent),
//! server-rendered with maud, and their panes, which the live stream (`live.rs`) re-renders
//! with [`main_panes`] and [`agent_panes`] and sends when their markup changed.
//!
//! Why maud: the markup is Rust, checked by the compiler and escaped by default (an agent's
//! text, a diff, a log line can never become markup: nothing here is `PreEscaped`), built
//! into the binary with no template files and no build step; the pages need no front-end
//! framework (the small script A serves only swaps panes, posts forms and shows toasts).
//!
//! Three layers, as elsewhere in the house:
//! - [`read`]: the hive read into view models (`model`), every text through the secret filter
//!   on the way in (blocking: sqlite, and git for a request's diff, cached per request);
//! - [`model`]: the view models and the few decisions drawn from them (pure, tables);
//! - `page`, `main_page`, `agent_page`: the markup, pure functions of the view models.
//!
//! What each page shows, and the ids and classes the script and the browser tests rely on, are
//! in docs/console.md ("What each page shows").

pub mod agent_page;
pub mod main_page;
pub mod model;
pub mod page;
pub mod read;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::Pane;
use super::session::Csrf;
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::c0re::rooms::RoomKey;

/// How long an agent's page waits for its room's history on first opening.
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the pages keep between renders (held by the core, [`Core::views`]).
#[derive(Default)]
pub struct Views {
    timelines: timeline::Timelines,
    /// Each open request's text by id, after the secret filter: rendering it runs git (its
    /// diff), and it never changes while the request is open.
    requests: Mutex<HashMap<i64, String>>,
    /// Each agent's log tail as last read, after the secret filter, by the log file's
    /// (modification time, length) then: read again only when the file changed.
    logs: Mutex<HashMap<String, (LogStamp, model::LogTail)>>,
}

/// What tells one state of a log file from another: its modification time and its length.
pub type LogStamp = (std::time::SystemTime, u64);

impl Views {
    /// Each agent room's recent messages.
    pub fn timelines(&self) -> &timeline::Timelines {
        &self.timelines
    }

    /// Request `id`'s text, rendered by `render` and passed through `shown` (the secret
    /// filter) the first time; kept filtered. A text that cannot be rendered is said in its
    /// place (filtered too, and tried again next time), never hidden.
    pub fn request_text(
        &self,
        id: i64,
        render: impl FnOnce() -> anyhow::Result<String>,
        shown: impl Fn(&str) -> String,
    ) -> String {
        if let Some(t) = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return t.clone();
        }
        match render().map(|t| shown(&t)) {
            Ok(t) => {
                self.requests
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, t.clone());
                t
            }
            Err(e) => {
                let e = shown(&format!("{e:#}"));
                tracing::warn!(approval = id, error = %e, "the request's text cannot be shown");
                format!("the request's changes cannot be shown: {e}")
            }
        }
    }

    /// `agent`'s log tail: the one kept when the file's `stamp` is the one it was read at,
    /// else `read` now (kept with `stamp`). No stamp (no file, or one that cannot be looked
    /// at): read now, not kept.
    pub fn log_tail(
        &self,
        agent: &str,
        stamp: Option<LogStamp>,
        read: impl FnOnce() -> model::LogTail,
    ) -> model::LogTail {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stamp) = stamp else {
            logs.remove(agent);
            return read();
        };
        if let Some((s, tail)) = logs.get(agent)
            && *s == stamp
        {
            return tail.clone();
        }
        let tail = read();
        logs.insert(agent.to_owned(), (stamp, tail.clone()));
        tail
    }

    /// Forgets the texts of requests no longer open (`open`: the ids that are).
    pub fn keep_requests(&self, open: &[i64]) {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| open.contains(id));
    }
}

/// The main page's panes, in page order, as they are now: the same for every session (no CSRF
/// token in them), so the live stream renders them once per change for all. Blocking (sqlite): call on a
/// blocking thread.
pub fn main_panes(core: &Core) -> anyhow::Result<Vec<Pane>> {
    Ok(main_page::panes(&read::main_view(core)?))
}

/// An agent's page's panes; `Ok(None)` for an agent the hive does not know. Blocking (sqlite,
/// the log): call on a blocking thread.
pub fn agent_panes(core: &Core, agent: &AgentName) -> anyhow::Result<Option<Vec<Pane>>> {
    let view = read::agent_view(core, agent)?;
    // Its room's history not read yet (this core started after the page was opened): read in
    // the background; the stream is woken when it is in.
    if let Some(v) = &view
        && matches!(&v.timeline, Ok(m) if !m.loaded)
        && let Some(room) = core.rooms().get(&RoomKey::Inbox(agent.clone()))
    {
        core.read_history_later(room);
    }
    Ok(view.map(|v| agent_page::panes(&v)))
}

/// `GET /` and `GET /agent/{name}` (behind the session layer, which puts the [`Csrf`] token in).
pub fn routes(core: Core) -> Router {
    Router::new()
        .route("/", get(main))
        .route("/agent/{name}", get(agent))
        .with_state(core)
}

/// A page, never cached (it is the operator's, and live).
fn html(status: StatusCode, page: maud::Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], page).into_response()
}

/// A page that could not be read: said, and logged.
fn failed(core: &Core, e: &anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "a console page cannot be read");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page::notice(
            "the page cannot be read",
            &core.shown(&format!("{e:#} (the core's log says more)")),
        ),
    )
}

fn not_found(what: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        page::notice(
            "not found",
            &format!("{what} is not an agent of this hive."),
        ),
    )
}

async fn main(State(core): State<Core>, Extension(Csrf(csrf)): Extension<Csrf>) -> Response {
    let c = core.clone();
    match tokio::task::spawn_blocking(move || read::main_view(&c)).await {
        Ok(Ok(v)) => html(StatusCode::OK, main_page::page(&v, &csrf)),
        Ok(Err(e)) => failed(&core, &e),
        Err(e) => failed(&core, &anyhow::Error::new(e)),
    }
}

async fn agent(
    State(core): State<Core>,
    Path(name): Path<String>,
    Extension(Csrf(csrf)): Extension<Csrf>,
) -> Response {
    let Ok(name) = AgentName::parse(&name) else {
        return not_found(&format!("{name:?}"));
    };
    // Its room's history is read once; the transaction path keeps it up to date after that.
    // A homeserver that does not answer soon does not hold the page: it says so instead.
    if let Some(room) = core.rooms().get(&RoomKey::Inbox(name.clone())) {
        match tokio::time::timeout(HISTORY_WAIT, core.load_timeline(&room)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(agent = %name, room = %room, error = %format!("{e:#}"), "cannot read the agent room's history for its page");
            }
            Err(_) => {
                tracing::warn!(agent = %name, room = %room, "the agent room's history was not read in time for its page");
            }
        }
    }
    let (c, n) = (core.clone(), name.clone());
    match tokio::task::spawn_blocking(move || read::agent_view(&c, &n)).await {
        Ok(Ok(Some(v))) => html(StatusCode::OK, agent_page::page(&v, &csrf)),
        Ok(Ok(None)) => not_found(name.as_str()),
        Ok(Err(e)) => failed(&core, &e),
        Err(e) => failed(&core, &anyhow::Error::new(e)),
    }
}
