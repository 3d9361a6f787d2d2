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
