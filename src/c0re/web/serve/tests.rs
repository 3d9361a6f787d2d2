//! The console's guard and its own routes through the router itself (`oneshot`, no network):
//! a core on a temp data dir, a stand-in page and form, a stand-in renderer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{Gate, MAX_BODY, gate, router_with, start};
use crate::c0re::Core;
use crate::c0re::web::Pane;
use crate::c0re::web::live::{KEEP_ALIVE_LINE, Live, Page, Render};
use crate::c0re::web::session::Csrf;

const HOST: &str = "127.0.0.1:8787";

struct Hive {
    core: Core,
    app: Router,
    /// What the stand-in renderer shows in its `count` pane.
    version: Arc<AtomicU64>,
    /// How many times the stand-in renderer ran.
    renders: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

/// A core served at `http://127.0.0.1:8787/` (nothing bound), with `GET /page` (answers its
/// CSRF token) and `POST /act/echo` (answers its body) behind the guard.
fn hive(max_streams: usize) -> Hive {
    let crate::c0re::test_core::TestCore { core, dir, .. } =
        crate::c0re::test_core::test_core(Vec::new());
    let served = start(&core, HOST.parse().unwrap()).expect("the console starts");
    let version = Arc::new(AtomicU64::new(1));
    let v = Arc::clone(&version);
    let renders = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&renders);
    let render: Render = Arc::new(move |_core: &Core, page: &Page| {
        r.fetch_add(1, Ordering::SeqCst);
        if matches!(page, Page::Agent(n) if n.as_str() == "gone") {
            return Ok(None);
        }
        let n = v.load(Ordering::SeqCst);
        Ok(Some(vec![
            Pane {
                id: "fixed".into(),
                html: maud::html! { div id="fixed" data-pane { "same\nlines" } },
            },
            Pane {
                id: "count".into(),
                html: maud::html! { div id="count" data-pane { (n) } },
            },
        ]))
    });
    let pages = Router::new()
        .route(
            "/page",
            get(|Extension(c): Extension<Csrf>| async move { format!("page for {}", c.0) }),
        )
        .route("/act/echo", post(|body: Bytes| async move { body }));
    let app = router_with(core.clone(), served, Live::new(render, max_streams), pages);
    Hive {
        core,
        app,
        version,
        renders,
        _dir: dir,
    }
}

fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
}

async fn call(app: &Router, r: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app.clone().oneshot(r).await.expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("a body");
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// `POST /login` with the form body `body` (the log-in button's post).
fn login_post(body: String) -> Request<Body> {
    req(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// Logs in with a fresh link (its button's post); the session cookie (`hive_session=<t>`) and
/// the CSRF token.
async fn logged_in(h: &Hive) -> (String, String) {
    let link = h.core.web().login_link().expect("a link");
    let (status, headers, _) = call(&h.app, login_post(link.query().unwrap().to_owned())).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_owned();
    let (_, _, page) = call(
        &h.app,
        req(Method::GET, "/page")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = page.strip_prefix("page for ").expect("the page").to_owned();
    (cookie, csrf)
}

#[test]
fn gate_table() {
    struct Case {
        name: &'static str,
        method: Method,
        path: &'static str,
        want: Gate,
    }
    let cases = [
        Case {
            name: "the link",
            method: Method::GET,
            path: "/login",
            want: Gate::Open,
        },
        Case {
            name: "the log-in button's post",
            method: Method::POST,
            path: "/login",
            want: Gate::Login,
        },
        Case {
            name: "an asset",
            method: Method::GET,
            path: "/assets/console.js",
            want: Gate::Open,
        },
        Case {
            name: "the main page",
            method: Method::GET,
            path: "/",
            want: Gate::Page,
        },
        Case {
            name: "a page nobody has",
            method: Method::GET,
            path: "/secret",
            want: Gate::Page,
        },
        Case {
            name: "the stream",
            method: Method::GET,
            path: "/events",
            want: Gate::Stream,
        },
        Case {
            name: "a form",
            method: Method::POST,
            path: "/act/approve/1",
            want: Gate::Post,
        },
        Case {
            name: "another method",
            method: Method::DELETE,
            path: "/",
            want: Gate::Post,
        },
        Case {
            name: "a look-alike of the assets",
            method: Method::GET,
            path: "/assetsx",
            want: Gate::Page,
        },
    ];
    for c in cases {
        assert_eq!(gate(&c.method, c.path), c.want, "{}", c.name);
    }
}

#[tokio::test]
async fn without_a_session_nothing_but_the_link_and_assets() {
    let h = hive(4);
    let (status, headers, body) = call(
        &h.app,
        req(Method::GET, "/page").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("hive console"), "{body}");
    assert_eq!(headers["x-frame-options"], "DENY");
    let (status, _, _) = call(
        &h.app,
        req(Method::GET, "/events").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = call(
        &h.app,
        req(Method::POST, "/act/echo")
            .header(header::COOKIE, "hive_session=forged")
            .body(Body::from("csrf=x"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({ "ok": false, "message": "not logged in" })
    );
    let (status, headers, body) = call(
        &h.app,
        req(Method::GET, "/assets/console.css")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(body, super::CONSOLE_CSS);
    let etag = headers[header::ETAG].clone();
    let (status, _, _) = call(
        &h.app,
        req(Method::GET, "/assets/console.css")
            .header(header::IF_NONE_MATCH, etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_link_logs_in_once_with_a_strict_cookie() {
    let h = hive(4);
    let link = h.core.web().login_link().expect("a link");
    assert_eq!(link.host_str(), Some("127.0.0.1"));
    let query = link.query().unwrap().to_owned();
    let token = query.strip_prefix("token=").expect("the token").to_owned();
    let uri = format!("/login?{query}");
    // Opening the link (or a previewer fetching it, twice) shows the button and uses nothing.
    for _ in 0..2 {
        let (status, headers, body) =
            call(&h.app, req(Method::GET, &uri).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!headers.contains_key(header::SET_COOKIE));
        assert!(
            body.contains(r#"id="login""#) && body.contains("autofocus"),
            "{body}"
        );
        assert!(body.contains(r#"method="post" action="/login""#), "{body}");
        assert!(
            body.contains(&format!(r#"name="token" value="{token}""#)),
            "{body}"
        );
        assert!(
            !body.contains("<script"),
            "no script on the login page: {body}"
        );
    }
    let (status, _, _) = call(&h.app, req(Method::HEAD, &uri).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // A post from another site is refused, and uses nothing either.
    let foreign = req(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(query.clone()))
        .unwrap();
    let (status, headers, _) = call(&h.app, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!headers.contains_key(header::SET_COOKIE));
    let big = format!("{query}&pad={}", "x".repeat(MAX_BODY));
    let (status, _, _) = call(&h.app, login_post(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // The button's post (same origin) logs in.
    let ours = req(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://127.0.0.1:8787")
        .body(Body::from(query.clone()))
        .unwrap();
    let (status, headers, _) = call(&h.app, ours).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.split("; ").any(|a| a == attr), "{attr}: {cookie}");
    }
    assert!(cookie.starts_with("hive_session="), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http on loopback: {cookie}"
    );
    let (status, _, body) = call(&h.app, login_post(query.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a second use");
    assert!(
        body.contains("already used") && body.contains("hive console"),
        "{body}"
    );
    let audit = h.core.store().audit_log(10).unwrap();
    let outcomes: Vec<&str> = audit
        .iter()
        .filter(|a| a.action == "console login")
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["ok", "refused"]);
    assert!(
        audit.iter().all(|a| a
            .detail
            .as_deref()
            .is_none_or(|d| !d.contains(link.query().unwrap()))),
        "no token in the audit"
    );
}

#[tokio::test]
async fn an_expired_or_unknown_link_is_refused() {
    let h = hive(4);
    let served = h.core.web().served().unwrap();
    let old = served
        .sessions
        .mint_link(crate::store::now_us() - 901_000_000)
        .unwrap();
    for (token, says) in [
        (old.as_str(), "expired"),
        ("made-up", "not one the hive made"),
    ] {
        let (status, headers, body) = call(&h.app, login_post(format!("token={token}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{says}");
        assert!(body.contains(says), "{body}");
        assert!(!headers.contains_key(header::SET_COOKIE));
    }
    let audit = h.core.store().audit_log(10).unwrap();
    let refused: Vec<Option<&str>> = audit
        .iter()
        .filter(|a| a.action == "console login")
        .map(|a| a.detail.as_deref())
        .collect();
    assert_eq!(
        refused,
        [Some("this link has expired")],
        "a link the hive made is on the record, a made-up token is not"
    );
}

#[tokio::test]
async fn a_post_needs_the_sessions_csrf_token() {
    let h = hive(4);
    let (cookie, csrf) = logged_in(&h).await;
    let form = "application/x-www-form-urlencoded";
    struct Case {
        name: &'static str,
        header: Option<String>,
        origin: Option<&'static str>,
        content_type: &'static str,
        body: String,
        want: StatusCode,
    }
    let cases = [
        Case {
            name: "no token",
            header: None,
            origin: None,
            content_type: form,
            body: "text=hi".into(),
            want: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a wrong header",
            header: Some("nope".into()),
            origin: None,
            content_type: form,
            body: format!("csrf={csrf}&text=hi"),
            want: StatusCode::FORBIDDEN,
        },
        Case {
            name: "a wrong field",
            header: None,
            origin: None,
            content_type: form,
            body: "csrf=nope&text=hi".into(),
            want: StatusCode::FORBIDDEN,
        },
        Case {
            name: "the field of a form",
            header: None,
            origin: Some("http://127.0.0.1:8787"),
            content_type: form,
            body: format!("csrf={csrf}&text=hi+there"),
            want: StatusCode::OK,
        },
        Case {
            name: "the header, any body",
            header: Some(csrf.clone()),
            origin: None,
            content_type: "application/json",
            body: "{\"csrf\":\"not read\"}".into(),
            want: StatusCode::OK,
        },
        Case {
            name: "a field in a body that is not a form",
            header: None,
            origin: None,
            content_type: "text/plain",
            body: format!("csrf={csrf}"),
            want: StatusCode::FORBIDDEN,
        },
        Case {
            name: "another site's origin",
            header: Some(csrf.clone()),
            origin: Some("http://evil.example.com"),
            content_type: form,
            body: format!("csrf={csrf}"),
            want: StatusCode::FORBIDDEN,
        },
        Case {
            name: "too big",
            header: Some(csrf.clone()),
            origin: None,
            content_type: form,
            body: format!("csrf={csrf}&text={}", "x".repeat(MAX_BODY)),
            want: StatusCode::PAYLOAD_TOO_LARGE,
        },
    ];
    for c in cases {
        let mut r = req(Method::POST, "/act/echo")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, c.content_type);
        if let Some(t) = &c.header {
            r = r.header("x-csrf-token", t);
        }
        if let Some(o) = c.origin {
            r = r.header(header::ORIGIN, o);
        }
        let (status, _, body) = call(&h.app, r.body(Body::from(c.body.clone())).unwrap()).await;
        assert_eq!(status, c.want, "{}: {body}", c.name);
        if status == StatusCode::OK {
            assert_eq!(body, c.body, "{}: the body is handed on whole", c.name);
        } else {
            let json: Value = serde_json::from_str(&body).expect(c.name);
            assert_eq!(json["ok"], false, "{}", c.name);
        }
        if c.want == StatusCode::FORBIDDEN && c.origin.is_none() {
            assert!(body.contains("csrf"), "{}: {body}", c.name);
        }
    }
}

#[tokio::test]
async fn a_bad_host_is_refused_everywhere() {
    let h = hive(4);
    for uri in ["/login?token=x", "/assets/console.js", "/page"] {
        let r = Request::builder()
            .uri(uri)
            .header(header::HOST, "evil.example.com:8787")
            .body(Body::empty())
            .unwrap();
        let (status, _, _) = call(&h.app, r).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{uri}");
    }
    let (status, _, _) = call(
        &h.app,
        Request::builder().uri("/page").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "no host at all");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let h = hive(4);
    let (cookie, csrf) = logged_in(&h).await;
    let (status, headers, _) = call(
        &h.app,
        req(Method::POST, "/logout")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, _) = call(
        &h.app,
        req(Method::GET, "/page")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The next chunk of a stream's body, as text.
async fn chunk(body: &mut axum::body::BodyDataStream) -> Option<String> {
    body.next()
        .await
        .map(|b| String::from_utf8(b.expect("a chunk").to_vec()).expect("utf-8"))
}

#[tokio::test]
async fn the_stream_sends_what_changed_and_ends_with_the_hive() {
    let h = hive(4);
    let (cookie, _) = logged_in(&h).await;
    let resp = h
        .app
        .clone()
        .oneshot(
            req(Method::GET, "/events")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    assert_eq!(chunk(&mut body).await.unwrap(), "retry: 2000\n\n");
    let first = chunk(&mut body).await.unwrap();
    assert_eq!(
        first,
        "event: pane\ndata: <div id=\"fixed\" data-pane>same\ndata: lines</div>\n\nevent: pane\ndata: <div id=\"count\" data-pane>1</div>\n\n",
        "every pane at first"
    );
    h.version.store(2, Ordering::SeqCst);
    h.core.console().changed();
    let second = chunk(&mut body).await.unwrap();
    assert!(second.contains("id=\"count\" data-pane>2<"), "{second}");
    assert!(!second.contains("fixed"), "only what changed: {second}");
    // Changes while nothing reads the stream are one render, of what is there by then.
    h.core.console().changed();
    h.version.store(3, Ordering::SeqCst);
    h.core.console().changed();
    let third = chunk(&mut body).await.unwrap();
    assert!(third.contains(">3<") && !third.contains("fixed"), "{third}");
    assert_ne!(third, KEEP_ALIVE_LINE);
    h.core.cancel().cancel();
    let mut rest = Vec::new();
    while let Some(c) = chunk(&mut body).await {
        rest.push(c);
    }
    assert!(rest.iter().all(|c| !c.contains("fixed")), "{rest:?}");
}

/// A stream of `/events` for the session `cookie`, past its `retry` line.
async fn stream(h: &Hive, cookie: &str) -> axum::body::BodyDataStream {
    let resp = h
        .app
        .clone()
        .oneshot(
            req(Method::GET, "/events")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    assert_eq!(chunk(&mut body).await.unwrap(), "retry: 2000\n\n");
    body
}

#[tokio::test]
async fn a_logout_ends_the_sessions_streams() {
    let h = hive(4);
    let (cookie, csrf) = logged_in(&h).await;
    let (other, _) = logged_in(&h).await;
    let mut mine = stream(&h, &cookie).await;
    let mut theirs = stream(&h, &other).await;
    assert!(chunk(&mut mine).await.unwrap().contains("count"));
    assert!(chunk(&mut theirs).await.unwrap().contains("count"));
    let (status, _, _) = call(
        &h.app,
        req(Method::POST, "/logout")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(chunk(&mut mine).await, None, "the logged-out stream ends");
    // The other session's stream goes on: it gets the next change.
    h.version.store(2, Ordering::SeqCst);
    h.core.console().changed();
    let next = chunk(&mut theirs).await.unwrap();
    assert!(next.contains("data-pane>2<"), "{next}");
}

#[tokio::test]
async fn an_expired_session_gets_nothing_more() {
    let h = hive(4);
    let (cookie, _) = logged_in(&h).await;
    let mut body = stream(&h, &cookie).await;
    assert!(chunk(&mut body).await.unwrap().contains("count"));
    // Its session ends in the store (as an expiry would have it): the next send does not go.
    let token = cookie.strip_prefix("hive_session=").expect("the cookie");
    let served = h.core.web().served().cloned().expect("served");
    assert!(served.sessions.logout(token).expect("closed"));
    h.version.store(2, Ordering::SeqCst);
    h.core.console().changed();
    assert_eq!(chunk(&mut body).await, None, "the stream ends instead");
}

#[tokio::test]
async fn one_render_serves_every_stream_of_a_page() {
    let h = hive(4);
    let (a, _) = logged_in(&h).await;
    let (b, _) = logged_in(&h).await;
    let mut one = stream(&h, &a).await;
    let mut two = stream(&h, &b).await;
    let first = chunk(&mut one).await.unwrap();
    assert_eq!(chunk(&mut two).await.unwrap(), first, "the same panes");
    assert_eq!(
        h.renders.load(Ordering::SeqCst),
        1,
        "rendered once for both"
    );
    h.version.store(2, Ordering::SeqCst);
    h.core.console().changed();
    let next = chunk(&mut one).await.unwrap();
    assert_eq!(chunk(&mut two).await.unwrap(), next);
    assert!(
        next.contains("data-pane>2<") && !next.contains("fixed"),
        "{next}"
    );
    assert_eq!(h.renders.load(Ordering::SeqCst), 2, "once per change");
}

#[tokio::test]
async fn an_agents_stream() {
    let h = hive(4);
    let (cookie, _) = logged_in(&h).await;
    let get = |uri: &str| {
        req(Method::GET, uri)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = call(&h.app, get("/events?agent=Not%20A%20Name")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let resp = h
        .app
        .clone()
        .oneshot(get("/events?agent=gone"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    assert_eq!(chunk(&mut body).await.unwrap(), "retry: 2000\n\n");
    assert_eq!(chunk(&mut body).await.unwrap(), "event: gone\ndata: \n\n");
    assert_eq!(chunk(&mut body).await, None, "the stream ends");
}

#[tokio::test]
async fn streams_are_bounded() {
    let h = hive(1);
    let (cookie, _) = logged_in(&h).await;
    let get = || {
        req(Method::GET, "/events")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap()
    };
    let held = h.app.clone().oneshot(get()).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let (status, _, _) = call(&h.app, get()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    let again = h.app.clone().oneshot(get()).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a closed stream frees its slot"
    );
}
