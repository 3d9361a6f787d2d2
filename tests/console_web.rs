//! The web console in a real browser (headless Chromium over WebDriver, `common::browser`), on
//! a real Synapse with a matrix-sdk operator watching the rooms.
//!
//! - `the_browser_harness_drives_chromium`: the harness itself on a trivial page (clicks,
//!   waits, an HttpOnly cookie, counted posts, a screenshot).
//! - `the_console_logs_in_once_shows_requests_live_and_acts_as_the_operator`: the login link
//!   (once), no session and forged posts refused, a request live on the page, approve and deny
//!   (which asks first) as the operator's own reactions, an agent's page, logout.
//! - `the_agent_page_cancels_a_running_turn`: the cancel button on a running turn.
//! - `questions_are_answered_from_the_console_by_option_and_by_text`: an agent's question,
//!   answered by its option's button (a keycap) and by text (a thread reply).
//!
//! Screenshots (`main`, `main-approvals`, `main-confirm-deny`, `main-question`, `agent-echo`,
//! `agent-sleepy-thinking`) go to `target/tmp/console-screenshots/` (see docs/testing.md).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use common::browser::Browser;
use common::{Operator, TestHive, echo_bot, request_message};
use hyperhive::store::{ApprovalState, Store};
use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use serde_json::{Value, json};

/// The harness page's posts, counted by the server.
static POSTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_harness_drives_chromium() {
    let page = r#"<!doctype html><html><head><title>harness</title></head>
<body><h1 id="title">hello</h1><p id="out">not yet</p>
<button id="go" onclick="fetch('/posted', {method: 'POST'}).then(r => r.text()).then(t => { document.getElementById('out').textContent = t; })">go</button>
</body></html>"#;
    let app = axum::Router::new()
        .route(
            "/",
            get(move || async move {
                (
                    [(
                        axum::http::header::SET_COOKIE,
                        "probe=s3cr3t; HttpOnly; SameSite=Strict; Path=/",
                    )],
                    axum::response::Html(page),
                )
            }),
        )
        .route(
            "/posted",
            post(move || async move {
                let n = POSTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                format!("posted {n}")
            }),
        );
    let base = common::serve_http(app).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.text("#title").await, "hello");

    // The cookie is HttpOnly (no script sees it) but the harness reads it, as a forged post
    // needs it.
    let cookie = browser.cookie("probe").await.expect("the cookie is set");
    assert_eq!((cookie.value(), cookie.http_only()), ("s3cr3t", Some(true)));
    assert_eq!(
        browser.js("return document.cookie").await,
        serde_json::json!("")
    );

    // Posts are counted; a click posts once and the page shows the answer.
    browser.count_posts().await;
    assert_eq!(browser.posts().await, Vec::<String>::new());
    browser.js("window.__marker = 1; return true").await;
    browser.click("#go").await;
    browser
        .wait_text("#out", "posted 1", "the post's answer")
        .await;
    assert_eq!(browser.posts().await, ["/posted"]);
    // Counting again on the same page starts from nothing, and counts each post once.
    browser.count_posts().await;
    assert_eq!(browser.posts().await, Vec::<String>::new());
    browser.click("#go").await;
    browser
        .wait_text("#out", "posted 2", "the second post's answer")
        .await;
    assert_eq!(browser.posts().await, ["/posted"]);
    assert_eq!(
        browser.js("return window.__marker").await,
        serde_json::json!(1),
        "the page was not reloaded"
    );
    assert!(!browser.has("#nothing-here").await);

    let shot = browser.screenshot("harness").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is a PNG of the page ({} bytes)",
        shot.display(),
        png.len()
    );
    browser.close().await;
}

// ---------------------------------------------------------------------------------------------
// The console itself, on a real hive.
// ---------------------------------------------------------------------------------------------

/// How long a wait on the hive lasts (Synapse, the core, two browsers on a 2-core machine).
const WAIT: Duration = Duration::from_secs(60);

/// The line the core prints (stderr) with the login link: 8 spaces, `console`, 5 spaces.
const LINK_LINE: &str = "        console     ";

/// A reaction the operator's matrix-sdk client saw.
#[derive(Debug, Clone)]
struct Reaction {
    sender: String,
    on: OwnedEventId,
    key: String,
}

type Reactions = Arc<Mutex<Vec<Reaction>>>;

/// Every reaction `op`'s client sees from now on (its sync is already running).
fn watch_reactions(op: &Operator) -> Reactions {
    let seen = Reactions::default();
    let s = seen.clone();
    op.client
        .add_event_handler(move |ev: OriginalSyncReactionEvent| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(Reaction {
                    sender: ev.sender.to_string(),
                    on: ev.content.relates_to.event_id.clone(),
                    key: ev.content.relates_to.key.clone(),
                });
            }
        });
    seen
}

/// The reactions seen on `event` by `sender`, in the order seen.
fn reactions_by(seen: &Reactions, event: &OwnedEventId, sender: &str) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|r| &r.on == event && r.sender == sender)
        .map(|r| r.key.clone())
        .collect()
}

/// Waits until `sender` reacted `key` on `event`; returns every key `sender` put on it.
async fn wait_reaction(
    hive: &TestHive,
    seen: &Reactions,
    event: &OwnedEventId,
    sender: &str,
    key: &str,
) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let keys = reactions_by(seen, event, sender);
        if keys.iter().any(|k| k == key) {
            return keys;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {sender}'s {key} on {event}; reactions seen:\n{:#?}\n{}",
                seen.lock().unwrap(),
                common::logs_tail(hive.dir.path())
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `hive.toml`'s `[web]` table: the console on a loopback port of its own.
fn web_config() -> String {
    format!("[web]\nlisten = \"127.0.0.1:{}\"\n", common::free_port())
}

/// The first login link in `text`: what follows [`LINK_LINE`] on its line.
fn link_in(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(LINK_LINE))
        .map(|l| l.trim().to_owned())
}

/// The login link the running core printed on its stderr (`<test dir>/c0re.log`).
async fn printed_link(hive: &TestHive) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(link) = link_in(&hive.core_log()) {
            return link;
        }
        assert!(
            Instant::now() < deadline,
            "the core printed no `{LINK_LINE}<url>` line:\n{}",
            hive.core_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The console's base URL (`http://127.0.0.1:<port>`) from a login link.
fn base_of(link: &str) -> String {
    let url = url::Url::parse(link).unwrap_or_else(|e| panic!("{link:?} is no URL: {e}"));
    assert_eq!(url.path(), "/login", "{link}");
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "token" && v.len() >= 16),
        "a token in {link}"
    );
    url.origin().ascii_serialization()
}

/// Opens the login link in `browser`, presses its "log in" button, and waits for the main page
/// with `agents`' rows.
async fn log_in(browser: &Browser, link: &str, agents: &[&str]) {
    browser.goto(link).await;
    browser.wait_for("#login", "the log-in button").await;
    browser.click("#login").await;
    for a in agents {
        browser
            .wait_for(
                &format!("#agents tr#agent-{a} .name a[href='/agent/{a}']"),
                &format!("{a}'s row on the main page"),
            )
            .await;
    }
}

/// The session cookie the browser holds, as a `Cookie:` header value.
async fn session_cookie(browser: &Browser) -> String {
    match browser.cookie("hive_session").await {
        Some(c) => format!("hive_session={}", c.value()),
        None => panic!("no hive_session cookie\n{}", browser.describe().await),
    }
}

/// The CSRF token the page carries (`<meta name="csrf-token">`).
async fn csrf_of(browser: &Browser) -> String {
    let v = browser
        .js("const m = document.querySelector('meta[name=\"csrf-token\"]'); return m ? m.content : null")
        .await;
    match v.as_str() {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => panic!("no csrf-token meta\n{}", browser.describe().await),
    }
}

/// Whether `#confirm` is open now.
async fn confirm_open(browser: &Browser) -> bool {
    browser
        .js("const d = document.getElementById('confirm'); return d !== null && d.open === true")
        .await
        == Value::Bool(true)
}

/// hm1nd puts `version` on echo's proposed side and files it; returns the commit's sha.
async fn file_echo_version(
    hm1nd: &mut hyperhive::wire::client::SocketClient,
    version: &str,
) -> String {
    let (text, err) = common::call_tool(
        hm1nd,
        "write_config",
        json!({"agent": "echo", "message": format!("echo answers {version}"),
               "files": [{"path": "agent.toml", "content": common::scripted(version)}]}),
    )
    .await;
    assert!(!err, "{text}");
    let sha = serde_json::from_str::<Value>(&text).unwrap()["sha"]
        .as_str()
        .unwrap()
        .to_owned();
    let (text, err) = common::call_tool(
        hm1nd,
        "request_apply_commit",
        json!({"agent": "echo", "sha": sha, "summary": format!("echo answers {version}")}),
    )
    .await;
    assert!(!err, "{text}");
    sha
}

fn approval_state(hive: &TestHive, id: i64) -> ApprovalState {
    Store::open(&hive.data.join("c0re.db"))
        .unwrap()
        .approval(id)
        .unwrap()
        .unwrap_or_else(|| panic!("no request #{id}"))
        .state
}

/// Empties `#toasts`, so that the next toast is the next act's.
async fn clear_toasts(browser: &Browser) {
    browser
        .js("document.getElementById('toasts').replaceChildren(); return true")
        .await;
}

/// Waits for the first toast since [`clear_toasts`]; asserts it is `.ok` and contains `needle`
/// (a refusal's `.err` toast fails with its message); returns its text.
async fn ok_toast(browser: &Browser, needle: &str, what: &str) -> String {
    browser
        .wait_js(
            "return document.querySelector('#toasts .toast') !== null",
            what,
        )
        .await;
    let toast = browser
        .js("const t = document.querySelector('#toasts .toast'); return [t.className, t.innerText]")
        .await;
    let (class, text) = (
        toast[0].as_str().unwrap_or_default(),
        toast[1].as_str().unwrap_or_default(),
    );
    assert!(
        class.split_whitespace().any(|c| c == "ok") && text.contains(needle),
        "{what}: the toast is {class:?}: {text:?} (wanted .ok with {needle:?})"
    );
    text.to_owned()
}

/// Login, the session, the live approvals pane, approve and deny as the operator, forgeries.
///
/// The login link logs in once (a second use, by anyone, is refused); without the session
/// every page, the stream and every post is refused; a request the manager files appears on the
/// open page without a reload; approving it in the browser is the operator's ✅ on the request
/// event, and applies it; a deny asks first and posts nothing until yes; a post without the
/// CSRF token, with a wrong one, or from another origin does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_logs_in_once_shows_requests_live_and_acts_as_the_operator() {
    let mut hive = TestHive::with_config(
        &[("echo", common::scripted("v1")), ("hm1nd", echo_bot(&[]))],
        &web_config(),
    )
    .await;
    hive.start_core();
    let me = hive.operator.user_id.clone();
    let op = hive.operator().await;
    let reactions = watch_reactions(&op);
    let approvals = op.join("hive-approvals").await;
    let echo = op.join("agent-echo").await;
    let link = printed_link(&hive).await;
    let base = base_of(&link);
    let http = common::no_redirect_client();

    // No session: the pages say how to get in, the stream and the posts are refused.
    for path in ["/", "/agent/echo", "/events", "/events?agent=echo"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "GET {path} without a session");
    }
    let page = http.get(format!("{base}/")).send().await.unwrap();
    let text = page.text().await.unwrap();
    assert!(
        text.contains("hive console"),
        "the 401 page says how: {text}"
    );
    let r = http
        .post(format!("{base}/act/say/echo"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer, json!({"ok": false, "message": "not logged in"}));
    let r = common::post_login(&http, &format!("{base}/login?token=not-a-token-0123456789")).await;
    assert_eq!(r.status(), 403, "an unknown token");

    // The link logs the browser in: the main page with both agents' rows, the session cookie
    // HttpOnly and SameSite=Strict.
    let browser = Browser::start().await;
    log_in(&browser, &link, &["echo", "hm1nd"]).await;
    assert_eq!(
        browser.url().await,
        format!("{base}/"),
        "303 to the main page"
    );
    browser
        .wait_text("#agent-echo .state", "idle", "echo idle on the main page")
        .await;
    let cookie = browser.cookie("hive_session").await.expect("a session");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        format!("{:?}", cookie.same_site()),
        "Some(Strict)",
        "{cookie:?}"
    );
    assert_eq!(
        browser.js("return document.body.dataset.stream").await,
        json!("/events")
    );
    for id in [
        "top",
        "tabs",
        "toasts",
        "confirm",
        "confirm-yes",
        "confirm-no",
    ] {
        assert!(
            browser.has(&format!("#{id}")).await,
            "#{id} on the main page"
        );
    }
    browser.screenshot("main").await;

    // The link worked once: a second use is refused, and says how to get a new one.
    let r = common::post_login(&http, &link).await;
    assert_eq!(r.status(), 403, "the link used twice");
    let text = r.text().await.unwrap();
    assert!(text.contains("hive console"), "{text}");
    // `hive console` prints a new link, which logs in (once).
    let out = hive.hive(&["console"]).output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "hive console: {printed}");
    let fresh = link_in(&printed).unwrap_or_else(|| panic!("a link in: {printed}"));
    assert_ne!(fresh, link);
    let shown = http.get(&fresh).send().await.unwrap();
    assert_eq!(shown.status(), 200, "opening the link uses nothing");
    let r = common::post_login(&http, &fresh).await;
    assert_eq!(r.status(), 303, "the new link logs in");
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("hive_session=")),
        "{:?}",
        r.headers()
    );
    assert_eq!(common::post_login(&http, &fresh).await.status(), 403);

    // A request filed by the manager appears on the open page, without a reload.
    browser.js("window.__marker = 1; return true").await;
    browser.click("#tabs a[href='#waiting']").await;
    let mut hm1nd = common::hello_socket(&hive, "hm1nd", "tools.sock", WAIT).await;
    let v2 = file_echo_version(&mut hm1nd, "v2").await;
    let request = request_message(&op, &approvals, 1, WAIT).await;
    let card = browser
        .wait_for("#approvals #approval-1", "request #1 on the open page")
        .await;
    assert_eq!(
        browser.js("return window.__marker").await,
        json!(1),
        "the page was not reloaded"
    );
    let card_text = card.text().await.unwrap();
    assert!(card_text.contains("hm1nd"), "who asked: {card_text}");
    let diff = browser.text("#approval-1 pre.diff").await;
    for line in ["-reply = \"v1: {body}\"", "+reply = \"v2: {body}\""] {
        assert!(diff.contains(line), "the diff in the card: {diff}");
        assert!(
            request.body.contains(line),
            "the diff in Matrix: {}",
            request.body
        );
    }
    browser.screenshot("main-approvals").await;

    // Forged posts, with the browser's session cookie: without the token, with a wrong one,
    // from another origin. All refused by the layer; nothing is done.
    let session = session_cookie(&browser).await;
    let csrf = csrf_of(&browser).await;
    let forged = |body: &'static str| {
        http.post(format!("{base}/act/approve/1"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    for (what, req) in [
        ("no token", forged("")),
        (
            "a wrong token",
            forged("csrf=0123456789abcdef0123456789abcdef"),
        ),
        (
            "a wrong token in the header",
            forged("").header("x-csrf-token", "0123456789abcdef0123456789abcdef"),
        ),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["ok"], false, "{what}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("csrf"),
            "{what}: {answer}"
        );
    }
    let r = http
        .post(format!("{base}/act/approve/1"))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a post from another origin");
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        matches!(r.status().as_u16(), 403 | 421),
        "a page asked for under another host name (DNS rebinding): {}",
        r.status()
    );
    assert_eq!(approval_state(&hive, 1), ApprovalState::Pending);
    assert_eq!(
        reactions_by(&reactions, &request.event_id, &me),
        Vec::<String>::new()
    );

    // Approve in the browser: no confirmation, a toast, the operator's own ✅ on the request
    // event, the config applied, the card gone (by the stream, not a reload).
    browser.count_posts().await;
    clear_toasts(&browser).await;
    browser.click("#approval-1 button[name=approve]").await;
    assert!(!confirm_open(&browser).await, "approve asks nothing");
    ok_toast(&browser, "#1", "the approve's toast").await;
    let keys = wait_reaction(&hive, &reactions, &request.event_id, &me, "✅").await;
    assert_eq!(
        keys,
        ["✅"],
        "one reaction of the operator's: the forgeries did nothing"
    );
    op.wait_until(&approvals, WAIT, "applied", |m| {
        m.iter()
            .any(|x| x.body.starts_with("✅ Applied") && x.body.contains("deploy/2"))
    })
    .await;
    op.send(&echo, "again").await;
    op.wait_until(&echo, WAIT, "echo on v2", |m| {
        m.iter().any(|x| x.body == "v2: again")
    })
    .await;
    assert_eq!(approval_state(&hive, 1), ApprovalState::Applied);
    let repo = hyperhive::configrepo::ConfigRepo::new(
        &hive.data,
        &hyperhive::agent_spec::AgentName::parse("echo").unwrap(),
    );
    assert_eq!(repo.current(), Some((2, v2.clone())), "echo runs that sha");
    browser
        .wait_gone("#approval-1", "request #1 leaves the page once applied")
        .await;
    let posts = browser.posts().await;
    assert_eq!(posts.len(), 1, "one post: {posts:?}");
    assert!(posts[0].ends_with("/act/approve/1"), "{posts:?}");

    // Deny asks first: nothing is posted until yes; no (and Esc) post nothing.
    let _v3 = file_echo_version(&mut hm1nd, "v3").await;
    let request = request_message(&op, &approvals, 2, WAIT).await;
    browser
        .wait_for("#approvals #approval-2", "request #2 on the open page")
        .await;
    assert_eq!(browser.js("return window.__marker").await, json!(1));
    browser.count_posts().await;
    browser.click("#approval-2 button[name=deny]").await;
    browser
        .wait_js(
            "return document.getElementById('confirm').open === true",
            "the confirmation",
        )
        .await;
    let question = browser.text("#confirm-text").await;
    assert!(question.contains("deny"), "{question}");
    assert_eq!(
        browser
            .js("return document.activeElement && document.activeElement.id")
            .await,
        json!("confirm-no"),
        "the safe answer has the focus"
    );
    browser.screenshot("main-confirm-deny").await;
    assert_eq!(
        browser.posts().await,
        Vec::<String>::new(),
        "nothing posted yet"
    );
    browser.click("#confirm-no").await;
    browser
        .wait_js(
            "return document.getElementById('confirm').open === false",
            "the confirmation closed by no",
        )
        .await;
    browser.click("#approval-2 button[name=deny]").await;
    browser
        .wait_js(
            "return document.getElementById('confirm').open === true",
            "the confirmation again",
        )
        .await;
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Escape.to_string())
        .await
        .unwrap();
    browser
        .wait_js(
            "return document.getElementById('confirm').open === false",
            "the confirmation closed by Esc",
        )
        .await;
    assert_eq!(
        browser.posts().await,
        Vec::<String>::new(),
        "no and Esc post nothing"
    );
    assert_eq!(approval_state(&hive, 2), ApprovalState::Pending);
    assert_eq!(
        reactions_by(&reactions, &request.event_id, &me),
        Vec::<String>::new()
    );
    browser.click("#approval-2 button[name=deny]").await;
    browser
        .wait_js(
            "return document.getElementById('confirm').open === true",
            "the confirmation a third time",
        )
        .await;
    clear_toasts(&browser).await;
    browser.click("#confirm-yes").await;
    ok_toast(&browser, "#2", "the deny's toast").await;
    let keys = wait_reaction(&hive, &reactions, &request.event_id, &me, "❌").await;
    assert_eq!(keys, ["❌"]);
    op.wait_until(&approvals, WAIT, "denied", |m| {
        m.iter().any(|x| x.body.starts_with("❌ Denied by"))
    })
    .await;
    assert_eq!(approval_state(&hive, 2), ApprovalState::Denied);
    let posts = browser.posts().await;
    assert_eq!(posts.len(), 1, "yes posted once: {posts:?}");
    assert!(posts[0].ends_with("/act/deny/2"), "{posts:?}");
    browser
        .wait_gone("#approval-2", "request #2 leaves the page once denied")
        .await;
    assert_eq!(repo.current(), Some((2, v2)), "the denied v3 runs nowhere");

    // An agent's page: its head, its room's messages live; writing to it is a message of the
    // operator's own in #agent-echo. An unknown or hostile name is a 404.
    browser.goto(&format!("{base}/agent/echo")).await;
    browser.wait_for("#agent-head", "echo's head").await;
    assert_eq!(
        browser.js("return document.body.dataset.stream").await,
        json!("/events?agent=echo")
    );
    browser
        .wait_text("#timeline", "v2: again", "echo's answer in its timeline")
        .await;
    browser.js("window.__marker = 2; return true").await;
    browser
        .type_into("form.act input[name=text]", "from the console")
        .await;
    clear_toasts(&browser).await;
    browser.click("form.act button[name=say]").await;
    ok_toast(&browser, "echo", "the say's toast").await;
    assert_eq!(
        browser
            .js("return document.querySelector('form.act input[name=text]').value")
            .await,
        json!(""),
        "the box is emptied once sent"
    );
    op.wait_until(
        &echo,
        WAIT,
        "the console's message and echo's answer",
        |m| {
            m.iter()
                .any(|x| x.sender == me && x.body == "from the console")
                && m.iter().any(|x| x.body == "v2: from the console")
        },
    )
    .await;
    browser
        .wait_text(
            "#timeline",
            "v2: from the console",
            "the answer in the timeline, live",
        )
        .await;
    assert_eq!(browser.js("return window.__marker").await, json!(2));
    browser
        .wait_for("#timeline .msg[data-event]", "a message with its event id")
        .await;
    browser.screenshot("agent-echo").await;
    for path in ["/agent/nobody", "/agent/Echo", "/agent/..%2Fhm1nd"] {
        let r = http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "GET {path}");
    }

    // Logging out ends the session: the same cookie is refused afterwards.
    let r = http
        .post(format!("{base}/logout"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status().is_redirection(),
        "logout: {}",
        r.status()
    );
    let r = http
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the session ended with the logout");
    browser.close().await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// The sleeping brain: `sleep <n>` starts `sleep 6017` and waits for it; anything else is
/// answered `done: <body>`.
const SLEEPER: &str = r#"#!/usr/bin/env python3
import json, subprocess, sys
body = json.load(sys.stdin)["message"]["body"]
if body.startswith("sleep "):
    subprocess.run(["sleep", "6017"])
print(json.dumps({"reply": "done: " + body}))
"#;

/// The agent page's cancel button stops a running turn: the page shows the turn live (thinking,
/// how long), the button posts `!hive cancel` as the operator, the core's `⏹️ cancelled` notice
/// reaches the rooms, the toast shows the outcome, and the next message is answered. Then stop
/// (which asks first), start and compact, each the operator's own command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_page_cancels_a_running_turn() {
    let mut hive = TestHive::with_config(
        &[(
            "sleepy",
            "[brain]\nkind = \"command\"\ncommand = [\"./sleeper.py\"]\ntimeout_secs = 3600\n"
                .into(),
        )],
        &web_config(),
    )
    .await;
    common::write_script(&hive.bots.join("sleepy"), "sleeper.py", SLEEPER);
    hive.start_core();
    let me = hive.operator.user_id.clone();
    let op = hive.operator().await;
    let inbox = op.join("agent-sleepy").await;
    let control = op.join("hive-c0re").await;
    let link = printed_link(&hive).await;
    let base = base_of(&link);
    let browser = Browser::start().await;
    log_in(&browser, &link, &["sleepy"]).await;
    browser.goto(&format!("{base}/agent/sleepy")).await;
    browser.wait_for("#agent-head", "sleepy's head").await;
    browser.js("window.__marker = 1; return true").await;

    // A turn that sleeps: the page shows it, live.
    op.send(&inbox, "sleep one").await;
    browser
        .wait_text("#agent-head", "thinking", "sleepy thinking, on its page")
        .await;
    browser
        .wait_for(
            "#agent-head time[data-since-ms]",
            "how long the turn has run",
        )
        .await;
    browser
        .wait_text("#timeline", "sleep one", "the message in the timeline")
        .await;
    // The page counts the turn's time up by itself (the server sends nothing for it).
    browser
        .wait_js(
            "const t = document.querySelector('#agent-head time[data-since-ms]');
             return t !== null && /^[1-9]/.test(t.textContent.trim())",
            "the turn's time counting up in the page",
        )
        .await;
    browser.screenshot("agent-sleepy-thinking").await;

    // Cancel: no confirmation, the toast says what happened, the rooms too.
    browser.count_posts().await;
    clear_toasts(&browser).await;
    browser
        .click("#agent-head form.act button[name=cancel]")
        .await;
    assert!(!confirm_open(&browser).await, "cancel asks nothing");
    let toast = ok_toast(&browser, "cancelled", "the cancel's outcome").await;
    assert!(toast.contains("sleep one"), "{toast}");
    let cancelled = |m: &[common::Seen]| {
        m.iter().any(|x| {
            x.body
                .starts_with("⏹️ cancelled sleepy's turn on “sleep one” after ")
        })
    };
    op.wait_until(&control, WAIT, "the core's answer in #hive-c0re", cancelled)
        .await;
    op.wait_until(&inbox, WAIT, "the notice in the inbox", cancelled)
        .await;
    let said = op
        .wait_until(&control, WAIT, "the command, as the operator", |m| {
            m.iter().any(|x| x.body == "!hive cancel sleepy")
        })
        .await;
    let command = said
        .iter()
        .find(|x| x.body == "!hive cancel sleepy")
        .unwrap();
    assert_eq!(command.sender, me, "sent as the operator's own account");
    let posts = browser.posts().await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].ends_with("/act/cancel/sleepy"), "{posts:?}");
    browser
        .wait_text("#agent-head", "idle", "sleepy idle again, on its page")
        .await;
    browser
        .wait_text("#timeline", "⏹️ cancelled", "the notice in the timeline")
        .await;
    assert_eq!(
        browser.js("return window.__marker").await,
        json!(1),
        "all of it live, no reload"
    );

    // The next message is answered; the cancelled one never is.
    op.send(&inbox, "after").await;
    op.wait_until(&inbox, WAIT, "the next message answered", |m| {
        m.iter().any(|x| x.body == "done: after")
    })
    .await;
    assert_eq!(op.count(&inbox, "done: sleep one"), 0);

    // Stop asks first; yes is `!hive stop` as the operator, and the page shows it stopped.
    // Start asks nothing and brings it back. Compact is `!compact` in its room, as the operator.
    browser.count_posts().await;
    browser
        .click("#agent-head form.act button[name=stop]")
        .await;
    browser
        .wait_js(
            "return document.getElementById('confirm').open === true",
            "stop's confirmation",
        )
        .await;
    let question = browser.text("#confirm-text").await;
    assert!(question.contains("stop sleepy"), "{question}");
    assert_eq!(
        browser.posts().await,
        Vec::<String>::new(),
        "nothing before yes"
    );
    clear_toasts(&browser).await;
    browser.click("#confirm-yes").await;
    ok_toast(&browser, "sleepy", "the stop's toast").await;
    op.wait_until(&control, WAIT, "!hive stop, as the operator", |m| {
        m.iter()
            .any(|x| x.sender == me && x.body == "!hive stop sleepy")
    })
    .await;
    browser
        .wait_text("#agent-head h1", "stopped", "sleepy stopped, on its page")
        .await;
    clear_toasts(&browser).await;
    browser
        .click("#agent-head form.act button[name=start]")
        .await;
    assert!(!confirm_open(&browser).await, "start asks nothing");
    ok_toast(&browser, "sleepy", "the start's toast").await;
    browser
        .wait_text("#agent-head h1", "idle", "sleepy back, on its page")
        .await;
    clear_toasts(&browser).await;
    browser
        .click("#agent-head form.act button[name=compact]")
        .await;
    assert!(!confirm_open(&browser).await, "compact asks nothing");
    ok_toast(&browser, "", "the compact's toast").await;
    op.wait_until(&inbox, WAIT, "!compact, as the operator, answered", |m| {
        m.iter().any(|x| x.sender == me && x.body == "!compact")
            && m.iter().any(|x| {
                x.body
                    .starts_with("`!compact` is not supported by my brain")
            })
    })
    .await;
    let posts = browser.posts().await;
    let ends: Vec<&str> = posts
        .iter()
        .map(|p| p.rsplit_once("/act/").map_or(p.as_str(), |(_, e)| e))
        .collect();
    assert_eq!(
        ends,
        ["stop/sleepy", "start/sleepy", "compact/sleepy"],
        "{posts:?}"
    );
    assert_eq!(browser.js("return window.__marker").await, json!(1));
    browser.close().await;
    assert_eq!(hive.stop_core().code(), Some(0));
}

/// An agent that asks: `ask` files a question with two options; the answer that comes back is
/// acknowledged `noted: …`.
const ASKER: &str = r#"#!/usr/bin/env python3
import json, sys
body = json.load(sys.stdin)["message"]["body"].strip()
if body == "ask":
    print(json.dumps({"ask_operator": [
        {"question": "Deploy on Friday?", "options": ["yes", "no"], "ttl_secs": 600}]}))
elif body.startswith("operator_answer:"):
    print(json.dumps({"reply": "noted: " + body}))
"#;

/// A question appears on the open page and is answered from it: by an option (the operator's
/// own keycap reaction on the question) and by text (the operator's reply in its thread); the
/// agent hears each answer, and the card leaves the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_are_answered_from_the_console_by_option_and_by_text() {
    let mut hive = TestHive::with_config(
        &[(
            "asker",
            "[brain]\nkind = \"command\"\ncommand = [\"./asker.py\"]\n".into(),
        )],
        &web_config(),
    )
    .await;
    common::write_script(&hive.bots.join("asker"), "asker.py", ASKER);
    hive.start_core();
    let me = hive.operator.user_id.clone();
    let op = hive.operator().await;
    let reactions = watch_reactions(&op);
    let inbox = op.join("agent-asker").await;
    let approvals = op.join("hive-approvals").await;
    let link = printed_link(&hive).await;
    let browser = Browser::start().await;
    log_in(&browser, &link, &["asker"]).await;
    browser.js("window.__marker = 1; return true").await;
    browser.click("#tabs a[href='#waiting']").await;
    let question = |id: u32| {
        let head = format!("**Question #{id}** from **asker**");
        let (op, approvals) = (&op, &approvals);
        async move {
            let msgs = op
                .wait_until(approvals, WAIT, &head, |m| {
                    m.iter().any(|x| x.body.starts_with(&head))
                })
                .await;
            msgs.into_iter()
                .find(|x| x.body.starts_with(&head))
                .unwrap()
                .event_id
        }
    };

    // By an option: the second one's button is the operator's 2️⃣ on the question.
    op.send(&inbox, "ask").await;
    let q1 = question(1).await;
    browser
        .wait_text(
            "#questions #question-1",
            "Deploy on Friday?",
            "question #1, live",
        )
        .await;
    browser.screenshot("main-question").await;
    clear_toasts(&browser).await;
    browser
        .click("#question-1 form.act:has(input[name=option][value='2']) button[name=answer]")
        .await;
    ok_toast(&browser, "#1", "the option's toast").await;
    let keys = wait_reaction(&hive, &reactions, &q1, &me, "2\u{fe0f}\u{20e3}").await;
    assert_eq!(keys, ["2\u{fe0f}\u{20e3}"]);
    op.wait_until(&inbox, WAIT, "the option's answer heard", |m| {
        m.iter()
            .any(|x| x.body == format!("noted: operator_answer: question #1: no (from {me})"))
    })
    .await;
    browser
        .wait_gone("#question-1", "question #1 leaves the page once answered")
        .await;

    // By text: a reply of the operator's in the question's thread.
    op.send(&inbox, "ask").await;
    question(2).await;
    browser
        .wait_for("#questions #question-2", "question #2, live")
        .await;
    browser
        .type_into(
            "#question-2 form.act input[name=text]",
            "only after the freeze",
        )
        .await;
    clear_toasts(&browser).await;
    browser
        .click("#question-2 form.act:has(input[name=text]) button[name=answer]")
        .await;
    ok_toast(&browser, "#2", "the text's toast").await;
    op.wait_until(
        &approvals,
        WAIT,
        "the operator's reply in the thread",
        |m| {
            m.iter()
                .any(|x| x.sender == me && x.body.contains("only after the freeze"))
        },
    )
    .await;
    op.wait_until(&inbox, WAIT, "the text's answer heard", |m| {
        m.iter().any(|x| {
            x.body
                .starts_with("noted: operator_answer: question #2: only after the freeze")
        })
    })
    .await;
    browser
        .wait_gone("#question-2", "question #2 leaves the page once answered")
        .await;
    assert_eq!(
        browser.js("return window.__marker").await,
        json!(1),
        "no reload"
    );
    browser.close().await;
    assert_eq!(hive.stop_core().code(), Some(0));
}
