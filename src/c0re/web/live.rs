//! The live stream (`GET /events`, server-sent events): each change of the hive re-renders the
//! page's panes and sends those whose markup changed, so the browser never polls and never
//! reloads.
//!
//! Rules:
//! - A stream renders its page's panes at once when it opens, then again after each
//!   [`Console::web_changed`](crate::c0re::console::Console::web_changed) (a `watch`, bumped by
//!   every `Console::changed` too), at most once per [`COALESCE`]: a burst of changes is one
//!   render.
//! - The panes are the same for every session (no CSRF token in them: the page's script sends
//!   the one of the page's `<meta>`), so one render of a page at a version of the watch is
//!   shared by every stream of that page ([`Shared`]): the first stream to look renders it,
//!   the others take it.
//! - It sends only the panes whose markup differs from what it last sent on that connection
//!   ([`changed_panes`]), each as one `pane` event ([`pane_event`]: one `data:` line per line
//!   of markup); the page replaces the element with that id.
//! - Before each send (a render's panes, a keep-alive) it checks that its session is still
//!   open (a store read); a session logged out or expired ends the stream. A logout wakes every
//!   stream to check at once ([`Live::session_closed`]).
//! - With nothing to send for [`KEEP_ALIVE`], it sends a comment line `: keep-alive`
//!   (proxies and browsers keep an idle stream open).
//! - It ends when the hive stops, when its session ends, or when its agent's page is gone (the agent left the hive:
//!   a `gone` event first, on which the page stops reconnecting).
//! - At most [`MAX_STREAMS`] streams run at once (a `503` beyond).
//! - A failed render is logged and tried again at the next change; the stream stays open.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use super::Pane;
use crate::agent_spec::AgentName;
use crate::c0re::Core;

/// The shortest time between two renders of one stream.
pub const COALESCE: Duration = Duration::from_millis(250);
/// The longest a stream stays silent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Streams served at once.
pub const MAX_STREAMS: usize = 32;
/// The comment a silent stream sends.
pub const KEEP_ALIVE_LINE: &str = ": keep-alive\n\n";
/// Sent when the page is gone (its agent left the hive), before the stream ends.
pub const GONE_EVENT: &str = "event: gone\ndata: \n\n";
/// Sent first: how long the browser waits before it reconnects a dropped stream.
const RETRY_LINE: &str = "retry: 2000\n\n";

/// Which page a stream feeds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Page {
    /// `/`: the hive at a glance.
    Main,
    /// `/agent/<name>`.
    Agent(AgentName),
}

/// Renders a page's panes as they are now (the same for every session). Blocking (sqlite):
/// run on a blocking thread. `Ok(None)`: the page is gone (an agent the hive does not know).
pub type Render = Arc<dyn Fn(&Core, &Page) -> anyhow::Result<Option<Vec<Pane>>> + Send + Sync>;

/// Whether the stream's session is still open (a store read; an error ends the stream too).
pub type Alive = Box<dyn Fn() -> anyhow::Result<bool> + Send + Sync>;

/// A page rendered once: its panes as (id, markup), `None` when the page is gone.
type Rendered = Arc<Option<Vec<(String, String)>>>;

/// One page's latest render, with the version of the watch it was made at; locked while a
/// stream renders it, so the others wait and take that render.
type Latest = Arc<tokio::sync::Mutex<Option<(u64, Rendered)>>>;

/// The latest render of each page.
#[derive(Default)]
struct Shared {
    pages: std::sync::Mutex<HashMap<Page, Latest>>,
}

/// The panes of `panes` whose markup differs from what `sent` holds for their id, as
/// (id, markup); `sent` is updated to them. Page order is kept.
pub fn changed_panes<'a>(
    sent: &mut HashMap<String, String>,
    panes: &'a [(String, String)],
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for (id, html) in panes {
        if sent.get(id) != Some(html) {
            sent.insert(id.clone(), html.clone());
            out.push((id.as_str(), html.as_str()));
        }
    }
    out
}

/// One pane as an event: `event: pane`, then one `data:` line per line of its markup (a `\r\n`
/// or a lone `\r` ends a line too, as the event-stream format reads them), then a blank line.
pub fn pane_event(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + 32);
    out.push_str("event: pane\n");
    for line in html.split('\n') {
        for part in line.strip_suffix('\r').unwrap_or(line).split('\r') {
            out.push_str("data: ");
            out.push_str(part);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// When a stream whose last render was at `last` may render again, at `now` or later.
pub fn next_render(last: Option<Instant>, now: Instant) -> Instant {
    last.map_or(now, |l| (l + COALESCE).max(now))
}

/// The streams' shared part: how pages are rendered, their latest renders, the connection
/// slots, and the watch a logout bumps.
#[derive(Clone)]
pub struct Live {
    render: Render,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    closed: Arc<watch::Sender<u64>>,
}

impl Live {
    pub fn new(render: Render, max_streams: usize) -> Self {
        Self {
            render,
            shared: Arc::default(),
            slots: Arc::new(Semaphore::new(max_streams)),
            closed: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A session was closed (a logout): every stream checks its own at once.
    pub fn session_closed(&self) {
        self.closed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The body of a stream of `page` for a session `alive` checks; `None` when
    /// [`MAX_STREAMS`] already run.
    pub fn open(&self, core: Core, page: Page, alive: Alive) -> Option<Body> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let conn = Conn {
            changes: core.console().watch(),
            closed: self.closed.subscribe(),
            core,
            page,
            alive,
            render: Arc::clone(&self.render),
            shared: Arc::clone(&self.shared),
            sent: HashMap::new(),
            last_render: None,
            last_sent: Instant::now(),
            dirty: true,
            first: true,
            done: false,
            _permit: permit,
        };
        Some(Body::from_stream(futures_util::stream::unfold(
            conn,
            |mut c| async move {
                let chunk = c.next().await?;
                Some((Ok::<_, Infallible>(chunk), c))
            },
        )))
    }
}

/// One connection's stream.
struct Conn {
    core: Core,
    page: Page,
    alive: Alive,
    render: Render,
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    /// Bumped by a logout.
    closed: watch::Receiver<u64>,
    /// What this connection last sent of each pane.
    sent: HashMap<String, String>,
    last_render: Option<Instant>,
    last_sent: Instant,
    /// A change came that is not rendered yet.
    dirty: bool,
    first: bool,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    /// The next bytes to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if self.first {
            self.first = false;
            return Some(Bytes::from_static(RETRY_LINE.as_bytes()));
        }
        loop {
            if self.done {
                return None;
            }
            if self.dirty {
                let at = next_render(self.last_render, Instant::now());
                tokio::select! {
                    _ = self.core.cancel().cancelled() => return None,
                    _ = tokio::time::sleep_until(at) => {}
                }
                // What changes from here on is seen by the next render, not lost.
                let version = *self.changes.borrow_and_update();
                self.dirty = false;
                self.last_render = Some(Instant::now());
                if let Some(chunk) = self.render_changes(version).await {
                    if !self.session_open() {
                        return None;
                    }
                    self.last_sent = Instant::now();
                    return Some(chunk);
                }
                continue;
            }
            tokio::select! {
                _ = self.core.cancel().cancelled() => return None,
                r = self.changes.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    self.dirty = true;
                }
                r = self.closed.changed() => {
                    if r.is_err() || !self.session_open() {
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE) => {
                    if !self.session_open() {
                        return None;
                    }
                    self.last_sent = Instant::now();
                    return Some(Bytes::from_static(KEEP_ALIVE_LINE.as_bytes()));
                }
            }
        }
    }

    /// Whether the stream's session is still open; a session that cannot be read ends the
    /// stream too (logged).
    fn session_open(&mut self) -> bool {
        match (self.alive)() {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "a live stream's session cannot be read; the stream ends");
                false
            }
        }
    }

    /// The page as rendered at `version` of the watch: the shared render when one is made at
    /// that version (or later), else rendered now and shared. `None`: the render failed
    /// (logged; tried again at the next change).
    async fn rendered(&self, version: u64) -> Option<Rendered> {
        let slot = Arc::clone(
            self.shared
                .pages
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(self.page.clone())
                .or_default(),
        );
        // Held while rendering: the other streams of the page wait for this render and take it.
        let mut latest = slot.lock().await;
        if let Some((v, r)) = latest.as_ref()
            && *v >= version
        {
            return Some(Arc::clone(r));
        }
        let (core, page, render) = (
            self.core.clone(),
            self.page.clone(),
            Arc::clone(&self.render),
        );
        let panes = tokio::task::spawn_blocking(move || render(&core, &page)).await;
        let rendered: Rendered = match panes {
            Ok(Ok(p)) => Arc::new(p.map(|p| {
                p.into_iter()
                    .map(|p| (p.id, p.html.into_string()))
                    .collect()
            })),
            Ok(Err(e)) => {
                tracing::warn!(page = ?self.page, error = %format!("{e:#}"), "the console's panes could not be rendered");
                return None;
            }
            Err(e) => {
                tracing::error!(page = ?self.page, error = %e, "the console's render panicked");
                return None;
            }
        };
        *latest = Some((version, Arc::clone(&rendered)));
        Some(rendered)
    }

    /// The page at `version`; the events of the panes that changed since this connection's
    /// last send, if any.
    async fn render_changes(&mut self, version: u64) -> Option<Bytes> {
        let rendered = self.rendered(version).await?;
        let Some(panes) = rendered.as_ref() else {
            // The page's script closes the stream on this (no reconnect to a page gone).
            self.done = true;
            return Some(Bytes::from_static(GONE_EVENT.as_bytes()));
        };
        let changed = changed_panes(&mut self.sent, panes);
        if changed.is_empty() {
            return None;
        }
        let text: String = changed.iter().map(|(_, html)| pane_event(html)).collect();
        Some(Bytes::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pane(id: &str, text: &str) -> (String, String) {
        (
            id.into(),
            maud::html! { div id=(id) data-pane { (text) } }.into_string(),
        )
    }

    #[test]
    fn only_changed_panes_are_sent() {
        struct Case {
            name: &'static str,
            panes: Vec<(String, String)>,
            want: Vec<&'static str>,
        }
        let cases = [
            Case {
                name: "first render: all",
                panes: vec![pane("agents", "a"), pane("approvals", "b")],
                want: vec!["agents", "approvals"],
            },
            Case {
                name: "nothing changed",
                panes: vec![pane("agents", "a"), pane("approvals", "b")],
                want: vec![],
            },
            Case {
                name: "one changed",
                panes: vec![pane("agents", "a2"), pane("approvals", "b")],
                want: vec!["agents"],
            },
            Case {
                name: "a new pane, page order",
                panes: vec![pane("audit", "c"), pane("agents", "a2")],
                want: vec!["audit"],
            },
            Case {
                name: "back to an earlier markup",
                panes: vec![pane("agents", "a")],
                want: vec!["agents"],
            },
        ];
        // One connection: each case follows the one before.
        let mut sent = HashMap::new();
        for c in cases {
            let got: Vec<&str> = changed_panes(&mut sent, &c.panes)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_pane_is_one_event_of_data_lines() {
        struct Case {
            name: &'static str,
            html: &'static str,
            want: &'static str,
        }
        let cases = [
            Case {
                name: "one line",
                html: "<div id=\"a\">x</div>",
                want: "event: pane\ndata: <div id=\"a\">x</div>\n\n",
            },
            Case {
                name: "lines of a diff",
                html: "<pre>-a\n+b</pre>",
                want: "event: pane\ndata: <pre>-a\ndata: +b</pre>\n\n",
            },
            Case {
                name: "an empty line is kept",
                html: "a\n\nb",
                want: "event: pane\ndata: a\ndata: \ndata: b\n\n",
            },
            Case {
                name: "crlf and a lone cr end lines too",
                html: "a\r\nb\rc",
                want: "event: pane\ndata: a\ndata: b\ndata: c\n\n",
            },
        ];
        for c in cases {
            assert_eq!(pane_event(c.html), c.want, "{}", c.name);
        }
    }

    #[test]
    fn renders_are_coalesced() {
        let t0 = Instant::now();
        struct Case {
            name: &'static str,
            last: Option<Instant>,
            now: Instant,
            want: Instant,
        }
        let cases = [
            Case {
                name: "never rendered: now",
                last: None,
                now: t0,
                want: t0,
            },
            Case {
                name: "just rendered: after the gap",
                last: Some(t0),
                now: t0 + Duration::from_millis(10),
                want: t0 + COALESCE,
            },
            Case {
                name: "long ago: now",
                last: Some(t0),
                now: t0 + Duration::from_secs(5),
                want: t0 + Duration::from_secs(5),
            },
        ];
        for c in cases {
            assert_eq!(next_render(c.last, c.now), c.want, "{}", c.name);
        }
    }
}
