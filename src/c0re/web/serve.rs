//! Serving the console: the listener, the router (the pages' and the forms' routes merged with
//! this module's own), and the guard in front of every route.
//!
//! The guard ([`guard`]), in this order:
//! 1. `Host` must name the console ([`Site::host_ok`]), else `421` (DNS rebinding).
//! 2. `GET /login` and `/assets/*` are open ([`gate`]); `POST /login` needs no session (the
//!    link's token is its credential) but passes the `Origin` and size checks of step 3;
//!    everything else needs an open session (the
//!    `hive_session` cookie): without one a page is `401` with a page that says how to log in,
//!    `/events` a bare `401`, a post `401` JSON `{"ok":false,"message":"not logged in"}`.
//! 3. A post (any method but `GET`/`HEAD`) also needs an `Origin` that is ours when it has one
//!    (`403`), a body of at most [`MAX_BODY`] (`413`), and the session's CSRF token in
//!    `X-CSRF-Token` or the urlencoded field `csrf` (`403` JSON naming the csrf token). The body
//!    is read for the check and handed on whole.
//! 4. The request goes on with the session's [`Csrf`] in its extensions; every answer gets the
//!    security headers ([`secure_headers`]).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use super::live::{Alive, Live, MAX_STREAMS, Page, Render};
use super::session::{self, Csrf, Key, Login, LoginResult, Sessions, Site, Verdict};
use super::{Outcome, Pane, Served};
use crate::agent_spec::AgentName;
use crate::c0re::Core;
use crate::config::WebConfig;
use crate::store::now_us;

/// The largest body a post may have.
pub const MAX_BODY: usize = 64 * 1024;
/// Who the audit says logged in or out.
const ACTOR: &str = "web console";

/// The page script and the stylesheet, built into the binary.
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// The pages' and the forms' routes, behind the guard.
fn sub_routers(core: Core) -> Router {
    Router::new()
        .merge(super::views::routes(core.clone()))
        .merge(super::actions::routes(core))
}

/// The live stream's renderer: a page's panes as they are now (the same for every session).
fn panes(core: &Core, page: &Page) -> anyhow::Result<Option<Vec<Pane>>> {
    match page {
        Page::Main => super::views::main_panes(core).map(Some),
        Page::Agent(name) => super::views::agent_panes(core, name),
    }
}

/// Binds the console's address (`[web] listen`); `None` when the console is off.
pub fn bind(cfg: &WebConfig) -> anyhow::Result<Option<std::net::TcpListener>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind(cfg.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {} (web.listen)", cfg.listen))?;
    Ok(Some(listener))
}

/// Makes the console's logins (its key, made once in the data dir) for the listener bound at
/// `bound`, and records it in the core: from here on links can be minted.
pub fn start(core: &Core, bound: SocketAddr) -> anyhow::Result<Arc<Served>> {
    let web = &core.cfg().web;
    let key = Key::load_or_create(core.data_dir())?;
    let served = Arc::new(Served {
        site: Site::new(&web.base_url(bound), bound),
        sessions: Sessions::new(
            key,
            core.store().clone(),
            web.link_ttl_secs,
            web.session_ttl_secs,
        ),
    });
    if !core.web().set(Arc::clone(&served)) {
        anyhow::bail!("the web console was already started");
    }
    Ok(served)
}

/// Serves the console on `listener` until `cancel` fires (live streams end with it).
pub async fn serve(
    core: Core,
    listener: std::net::TcpListener,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let served = core
        .web()
        .served()
        .cloned()
        .context("the web console was not started")?;
    let live = Live::new(Arc::new(panes) as Render, MAX_STREAMS);
    let app = router_with(core.clone(), served, live, sub_routers(core));
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .context("the web console's server failed")
}

#[derive(Clone)]
struct AppState {
    core: Core,
    served: Arc<Served>,
    live: Live,
}

/// The whole console: `pages` (the views' and the actions' routes) and this module's own
/// routes, behind the guard.
pub fn router_with(core: Core, served: Arc<Served>, live: Live, pages: Router) -> Router {
    let st = AppState { core, served, live };
    let own = Router::new()
        .route(
            "/login",
            // A `HEAD` is no way to log in (and used to use the link up): refused outright.
            get(login_page)
                .post(login)
                .head(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route(
            "/assets/console.js",
            get(|h: HeaderMap| async move { asset(&h, &JS) }),
        )
        .route(
            "/assets/console.css",
            get(|h: HeaderMap| async move { asset(&h, &CSS) }),
        )
        .with_state(st.clone());
    Router::new()
        .merge(pages)
        .merge(own)
        // Unknown paths pass the guard too: nobody learns which exist without a session.
        .fallback(|| async { (StatusCode::NOT_FOUND, page("not found", "no such page.")) })
        .layer(middleware::from_fn_with_state(st, guard))
}

/// What a request needs to pass the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `GET /login`, `/assets/*`: no session.
    Open,
    /// `POST /login`: no session (the link's token stands in for it), but our origin and the
    /// size cap.
    Login,
    /// A page: a session.
    Page,
    /// `/events`: a session.
    Stream,
    /// Anything that is not a `GET` or `HEAD`: a session, our origin and the CSRF token.
    Post,
}

/// The gate of a request (pure; see the module's rules).
pub fn gate(method: &Method, path: &str) -> Gate {
    let post = method != Method::GET && method != Method::HEAD;
    if path == "/login" && post {
        Gate::Login
    } else if path == "/login" || path.starts_with("/assets/") {
        Gate::Open
    } else if post {
        Gate::Post
    } else if path == "/events" {
        Gate::Stream
    } else {
        Gate::Page
    }
}

async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let host = text(req.headers(), header::HOST);
    if !st.served.site.host_ok(host) {
        return secure_headers(
            (
                StatusCode::MISDIRECTED_REQUEST,
                "this console answers only to its own address\n",
            )
                .into_response(),
        );
    }
    let gate = gate(req.method(), req.uri().path());
    match gate {
        Gate::Open => return secure_headers(next.run(req).await),
        Gate::Login => {
            return secure_headers(match checked_body(&st.served.site, req).await {
                Ok((parts, bytes)) => {
                    next.run(Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(refusal) => refusal,
            });
        }
        Gate::Page | Gate::Stream | Gate::Post => {}
    }
    let cookies = req.headers().get_all(header::COOKIE);
    let token = session::cookie(
        cookies.iter().filter_map(|v| v.to_str().ok()),
        session::cookie_name(st.served.site.secure),
    );
    let csrf = match token.map(|t| st.served.sessions.session(t, now_us())) {
        Some(Ok(Some(csrf))) => csrf,
        None | Some(Ok(None)) => return secure_headers(not_logged_in(gate)),
        Some(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "the console's sessions are unreadable");
            return secure_headers(
                (StatusCode::INTERNAL_SERVER_ERROR, "sessions unreadable\n").into_response(),
            );
        }
    };
    let mut req = req;
    if gate == Gate::Post {
        req = match check_post_request(&st.served.site, &csrf, req).await {
            Ok(r) => r,
            Err(refusal) => return secure_headers(refusal),
        };
    }
    req.extensions_mut().insert(csrf);
    secure_headers(next.run(req).await)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(Outcome { ok: false, message })).into_response()
}

/// A post's origin and size: its head and its whole body.
async fn checked_body(
    site: &Site,
    req: Request,
) -> Result<(axum::http::request::Parts, axum::body::Bytes), Response> {
    if !site.origin_ok(text(req.headers(), header::ORIGIN)) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "refused: the post comes from another site (its Origin is not this console)".into(),
        ));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("refused: a post is at most {} KiB", MAX_BODY / 1024),
        ));
    };
    Ok((parts, bytes))
}

/// A post's origin, size and CSRF token; the request with its body back in place.
async fn check_post_request(site: &Site, csrf: &Csrf, req: Request) -> Result<Request, Response> {
    let (parts, bytes) = checked_body(site, req).await?;
    let urlencoded = text(&parts.headers, header::CONTENT_TYPE)
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let field = urlencoded
        .then(|| {
            url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    let header = text(&parts.headers, "x-csrf-token");
    match session::check_post(csrf, header, field.as_deref()) {
        Verdict::Accepted => Ok(Request::from_parts(parts, Body::from(bytes))),
        v => Err(refuse(StatusCode::FORBIDDEN, v.message().into())),
    }
}

fn text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to a request without a session, by what it asked for.
fn not_logged_in(gate: Gate) -> Response {
    match gate {
        Gate::Post => (
            StatusCode::UNAUTHORIZED,
            Json(Outcome {
                ok: false,
                message: "not logged in".into(),
            }),
        )
            .into_response(),
        Gate::Stream => (StatusCode::UNAUTHORIZED, "not logged in\n").into_response(),
        Gate::Page | Gate::Open | Gate::Login => (
            StatusCode::UNAUTHORIZED,
            page(
                "not logged in",
                "open the link `hive up` printed, or run `hive console` for a new one.",
            ),
        )
            .into_response(),
    }
}

/// The headers every answer carries: no framing, no sniffing, a referrer only to the console
/// itself (`same-origin`: a login page's token never leaves in one; not `no-referrer`, under
/// which a browser sends `Origin: null` with a form's post, and the login button's post would
/// be refused as from another site), scripts and styles only from the console itself, nothing
/// cached but the assets.
fn secure_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}

/// A small page of the console's own (not logged in, a refused link, logged out).
fn page(title: &str, text: &str) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "hive console — " (title) }
                link rel="stylesheet" href="/assets/console.css";
            }
            body.plain {
                main {
                    h1 { "⟦ " (title) " ⟧" }
                    p { (text) }
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// `GET /login?token=<t>`: a page with a "log in" button that posts the token back. It uses
/// nothing up: a link previewer, a `HEAD` or a prefetch that follows the link leaves it working,
/// and the post that opens the session comes from the console's own page, so the browser keeps
/// the `SameSite=Strict` cookie on the redirect that follows (a click from another site would
/// lose it). No inline script (the CSP forbids it): the button has `autofocus`, Enter logs in.
async fn login_page(State(st): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return refused_link("this link carries no token");
    };
    let hive = st.core.cfg().hive_name.clone();
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "hive console — log in" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body.plain {
                main {
                    h1 { "⟦ " (hive) " ⟧" }
                    form method="post" action="/login" {
                        input type="hidden" name="token" value=(token);
                        button id="login" type="submit" autofocus { "log in" }
                    }
                }
            }
        }
    };
    html.into_response()
}

/// `POST /login` (form field `token`): a valid link's token opens a session (the cookie) and
/// sends the browser to `/`; any other is `403` with a page saying why. The guard has checked
/// the post's `Origin` and size; the token stands in for the session and the CSRF token.
async fn login(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refused_link("this link carries no token");
    };
    match st.served.sessions.login(&token, now_us()) {
        Ok(LoginResult::Opened { session }) => {
            st.core
                .audit_by(ACTOR, "console login", None, None, "ok", None);
            let cookie = session::set_cookie(
                &session,
                st.served.site.secure,
                st.served.sessions.session_ttl_secs(),
            );
            // A base64url token and fixed attributes: always a valid header value.
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/".to_owned()),
                    (header::SET_COOKIE, cookie),
                ],
            )
                .into_response()
        }
        Ok(LoginResult::Refused(why)) => {
            // A link the hive made, followed again or late, is on the record. A made-up token
            // is not: any page the operator visits could send those, and fill the audit.
            if why == Login::Unknown {
                tracing::debug!("a console login with a token the hive never made");
            } else {
                st.core.audit_by(
                    ACTOR,
                    "console login",
                    None,
                    None,
                    "refused",
                    Some(why.why()),
                );
            }
            refused_link(why.why())
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "a console login failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                page(
                    "not logged in",
                    "the hive could not log you in: see its log.",
                ),
            )
                .into_response()
        }
    }
}

fn refused_link(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            "link refused",
            &format!("{why}. run `hive console` on the hive's machine for a new link."),
        ),
    )
        .into_response()
}

/// `POST /logout`: ends the session, forgets the cookie, and sends the browser to `/` (which
/// then says how to log in again).
async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let cookies = headers.get_all(header::COOKIE);
    if let Some(t) = session::cookie(
        cookies.iter().filter_map(|v| v.to_str().ok()),
        session::cookie_name(st.served.site.secure),
    ) {
        match st.served.sessions.logout(t) {
            Ok(_) => {
                // Its open streams end now, not at their next send.
                st.live.session_closed();
                st.core
                    .audit_by(ACTOR, "console logout", None, None, "ok", None);
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "a console logout failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "logout failed\n").into_response();
            }
        }
    }
    let clear = session::clear_cookie(st.served.site.secure);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (header::SET_COOKIE, clear),
        ],
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    agent: Option<String>,
}

/// `GET /events[?agent=<name>]`: the page's live stream, for as long as its session is open.
async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    // The guard let it in with an open session: the stream re-checks that one before each send.
    let token = session::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        session::COOKIE,
    )
    .unwrap_or_default()
    .to_owned();
    let served = Arc::clone(&st.served);
    let alive: Alive = Box::new(move || Ok(served.sessions.session(&token, now_us())?.is_some()));
    let page = match q.agent {
        None => Page::Main,
        Some(a) => match AgentName::parse(&a) {
            Ok(n) => Page::Agent(n),
            Err(_) => return (StatusCode::NOT_FOUND, "no such agent\n").into_response(),
        },
    };
    let Some(body) = st.live.open(st.core.clone(), page, alive) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams are open; close a console tab\n",
        )
            .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// A built-in asset: its bytes, type and validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

static JS: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(CONSOLE_JS, "text/javascript; charset=utf-8"));
static CSS: LazyLock<Asset> = LazyLock::new(|| Asset::new(CONSOLE_CSS, "text/css; charset=utf-8"));

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        // FNV-1a: stable across builds; only tells one build's asset from another's.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in body.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        Self {
            body,
            content_type,
            etag: format!("\"{h:016x}\""),
        }
    }
}

/// An asset, or `304` when the browser holds this very one (it asks again each time: an
/// upgraded binary's assets are never stale).
fn asset(headers: &HeaderMap, a: &Asset) -> Response {
    let fresh = text(headers, header::IF_NONE_MATCH).is_some_and(|v| v == a.etag);
    let h = [
        (header::CONTENT_TYPE, a.content_type.to_owned()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, a.etag.clone()),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, h).into_response()
    } else {
        (h, a.body).into_response()
    }
}

#[cfg(test)]
mod tests;
