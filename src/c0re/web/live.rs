//! The live stream (`GET /events`, server-sent events): each change of the hive re-renders the
//! page's panes and sends those whose markup changed, so the browser never polls and never
//! reloads.
//!
//! Rules:
//! - A stream renders its page's panes at once when it opens, then again after each
//!   [`Console::changed`](crate::c0re::console::Console::changed) (a `watch`), at most once
//!   per [`COALESCE`]: a burst of changes is one render.
//! - It sends only the panes whose markup differs from what it last sent on that connection
//!   ([`changed_panes`]), each as one `pane` event ([`pane_event`]: one `data:` line per line
//!   of markup); the page replaces the element with that id.
//! - With nothing to send for [`KEEP_ALIVE`], it sends a comment line `: keep-alive`
//!   (proxies and browsers keep an idle stream open).
//! - It ends when the hive stops, or when its agent's page is gone (the agent left the hive:
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
use super::session::Csrf;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// `/`: the hive at a glance.
    Main,
    /// `/agent/<name>`.
    Agent(AgentName),
}

/// Renders a page's panes as they are now, with the session's CSRF token for their forms.
/// Blocking (sqlite): run on a blocking thread. `Ok(None)`: the page is gone (an agent the hive
/// does not know).
pub type Render =
    Arc<dyn Fn(&Core, &Page, &str) -> anyhow::Result<Option<Vec<Pane>>> + Send + Sync>;

/// The panes of `panes` whose markup differs from what `sent` holds for their id, as
/// (id, markup); `sent` is updated to them. Page order is kept.
pub fn changed_panes(
    sent: &mut HashMap<String, String>,
    panes: Vec<Pane>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panes {
        let html = p.html.into_string();
        if sent.get(&p.id) != Some(&html) {
            sent.insert(p.id.clone(), html.clone());
            out.push((p.id, html));
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

/// The streams' shared part: how pages are rendered, and the connection slots.
#[derive(Clone)]
pub struct Live {
    render: Render,
    slots: Arc<Semaphore>,
}

impl Live {
    pub fn new(render: Render, max_streams: usize) -> Self {
        Self {
            render,
            slots: Arc::new(Semaphore::new(max_streams)),
        }
    }

    /// The body of a stream of `page` for the session whose CSRF token is `csrf`; `None` when
    /// [`MAX_STREAMS`] already run.
    pub fn open(&self, core: Core, page: Page, csrf: Csrf) -> Option<Body> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let conn = Conn {
            changes: core.console().watch(),
            core,
            page,
            csrf,
            render: Arc::clone(&self.render),
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
    csrf: Csrf,
    render: Render,
    changes: watch::Receiver<u64>,
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
                self.changes.mark_unchanged();
                self.dirty = false;
                self.last_render = Some(Instant::now());
                if let Some(chunk) = self.render_changes().await {
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
                _ = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE) => {
                    self.last_sent = Instant::now();
                    return Some(Bytes::from_static(KEEP_ALIVE_LINE.as_bytes()));
                }
            }
        }
    }

    /// Renders the page; the events of the panes that changed, if any.
    async fn render_changes(&mut self) -> Option<Bytes> {
        let (core, page, csrf, render) = (
            self.core.clone(),
            self.page.clone(),
            self.csrf.0.clone(),
            Arc::clone(&self.render),
        );
        let panes = tokio::task::spawn_blocking(move || render(&core, &page, &csrf)).await;
        let panes = match panes {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => {
                // The page's script closes the stream on this (no reconnect to a page gone).
                self.done = true;
                return Some(Bytes::from_static(GONE_EVENT.as_bytes()));
            }
            Ok(Err(e)) => {
                tracing::warn!(page = ?self.page, error = %format!("{e:#}"), "the console's panes could not be rendered");
                return None;
            }
            Err(e) => {
                tracing::error!(page = ?self.page, error = %e, "the console's render panicked");
                return None;
            }
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

    fn pane(id: &str, text: &str) -> Pane {
        Pane {
            id: id.into(),
            html: maud::html! { div id=(id) data-pane { (text) } },
        }
    }

    #[test]
    fn only_changed_panes_are_sent() {
        struct Case {
            name: &'static str,
            panes: Vec<Pane>,
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
            let got: Vec<String> = changed_panes(&mut sent, c.panes)
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
