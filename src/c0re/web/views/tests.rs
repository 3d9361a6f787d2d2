//! The pages: pure renders of view models (escaping, the contract's ids and classes, which forms
//! ask once more) and the routes through the router itself (`oneshot`, a core on a temp data
//! dir, no homeserver).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use super::model::{
    AgentRow, AgentView, ApprovalCard, AuditRow, CardForms, CrashLine, Header, LogTail, MainView,
    PeerRow, QuestionCard, TurnNow, TurnRow,
};
use super::page::{Act, Verb, act};
use super::timeline::{Msg, RoomMessages};
use super::{agent_page, main_page};
use crate::agent_spec::{AgentName, AgentSpec};
use crate::c0re::Core;
use crate::c0re::agents::listing::Shown;
use crate::c0re::rooms::RoomKey;
use crate::c0re::schedules::ScheduleLine;
use crate::c0re::web::session::Csrf;
use crate::store::{ApprovalKind, ApprovalState, TurnOutcome};

const HOSTILE: &str = "<script>alert(\"x\")</script> 'quoted' & \"double\"";
const CSRF: &str = "tok-123";

fn agent_row(name: &str, state: Shown) -> AgentRow {
    AgentRow {
        name: name.into(),
        state,
        turn: (state == Shown::Thinking).then(|| TurnNow {
            what: Some(HOSTILE.into()),
            sender: HOSTILE.into(),
            event_id: "$turn".into(),
            since_ms: 1_700_000_000_000,
            attempt: 1,
        }),
        queued: 3,
        model: HOSTILE.into(),
        cost_today_usd: 1.5,
        crash: Some(CrashLine {
            at_ms: 1_699_999_000_000,
            status: HOSTILE.into(),
        }),
    }
}

fn main_view() -> MainView {
    let agents = vec![
        agent_row("echo", Shown::Thinking),
        agent_row("quiet", Shown::Idle),
    ];
    MainView {
        now_ms: 1_700_000_042_000,
        header: Header::count(HOSTILE, &agents, 2),
        agents,
        approvals: vec![
            ApprovalCard {
                id: 7,
                kind: ApprovalKind::ApplyCommit,
                state: ApprovalState::Pending,
                agent: "echo".into(),
                requester: HOSTILE.into(),
                summary: HOSTILE.into(),
                text: format!("+added {HOSTILE}\n-removed\n@@ -1 +1 @@"),
                forms: CardForms::Vote,
                expires_ms: 1_700_000_900_000,
                approvers: vec![],
                required: 1,
                link: Some(format!("https://matrix.to/#/!a:hive.test/{HOSTILE}")),
            },
            ApprovalCard {
                id: 8,
                kind: ApprovalKind::Purge,
                state: ApprovalState::Confirming,
                agent: "gone".into(),
                requester: "hm1nd".into(),
                summary: "s".into(),
                text: "purge it".into(),
                forms: CardForms::ConfirmPurge,
                expires_ms: 1_700_000_900_000,
                approvers: vec!["@op:hive.test".into()],
                required: 1,
                link: None,
            },
            ApprovalCard {
                id: 9,
                kind: ApprovalKind::Destroy,
                state: ApprovalState::Pending,
                agent: "quiet".into(),
                requester: "hm1nd".into(),
                summary: "s".into(),
                text: "destroy it".into(),
                forms: CardForms::Vote,
                expires_ms: 1_700_000_900_000,
                approvers: vec![],
                required: 1,
                link: None,
            },
        ],
        questions: vec![QuestionCard {
            id: 3,
            agent: "echo".into(),
            question: HOSTILE.into(),
            options: vec!["yes".into(), HOSTILE.into()],
            posted: true,
            expires_ms: 1_700_000_900_000,
            link: Some("https://matrix.to/#/!a:hive.test/$q".into()),
        }],
        schedules: vec![ScheduleLine {
            agent: "echo".into(),
            schedule: "daily".into(),
            when: HOSTILE.into(),
            next: "now".into(),
            last: "never".into(),
        }],
        peers: vec![PeerRow {
            hive: "other".into(),
            server: "other.test".into(),
            reachable: Some(false),
            probed_ms: Some(1_700_000_000_000),
            error: Some(HOSTILE.into()),
            last_event_ms: None,
            held: 0,
        }],
        audit: vec![AuditRow {
            ts_ms: 1_700_000_000_000,
            actor: "@op:hive.test".into(),
            action: "approve".into(),
            outcome: "ok".into(),
            approval_id: Some(7),
            agent: Some("echo".into()),
            detail: Some(HOSTILE.into()),
        }],
    }
}

fn agent_view() -> AgentView {
    let agent = agent_row("echo", Shown::Thinking);
    AgentView {
        now_ms: 1_700_000_042_000,
        header: Header::count("hive", std::slice::from_ref(&agent), 0),
        agent,
        description: Some(HOSTILE.into()),
        timeline: Ok(RoomMessages {
            msgs: vec![Msg {
                event_id: "$m1".into(),
                sender: "@op:hive.test".into(),
                body: HOSTILE.into(),
                ts_ms: 1_700_000_000_000,
                notice: false,
            }],
            loaded: true,
        }),
        turns: vec![TurnRow {
            started_ms: 1_700_000_000_000,
            duration_ms: 1200,
            outcome: TurnOutcome::Done,
            model: HOSTILE.into(),
            calls: 2,
            tokens: 300,
            cost_usd: 0.01,
            unpriced_calls: 0,
        }],
        log: LogTail::Text(format!("line one\n{HOSTILE}")),
    }
}

/// No agent text reaches the markup as markup.
fn assert_escaped(html: &str, what: &str) {
    assert!(
        !html.contains("<script>alert"),
        "{what}: a script tag got through"
    );
    assert!(!html.contains("\"double\""), "{what}: a raw double quote");
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "{what}: the hostile text is shown, escaped"
    );
}

#[test]
fn agent_text_is_escaped_everywhere() {
    let main = main_page::page(&main_view(), CSRF).into_string();
    assert_escaped(&main, "the main page");
    let agent = agent_page::page(&agent_view(), CSRF).into_string();
    assert_escaped(&agent, "an agent's page");
    for p in main_page::panes(&main_view())
        .into_iter()
        .chain(agent_page::panes(&agent_view()))
    {
        let html = p.html.into_string();
        assert!(!html.contains("<script>alert"), "pane {}", p.id);
    }
}

#[test]
fn a_hostile_attribute_value_stays_in_its_attribute() {
    let q = "\" onmouseover=\"alert(1)";
    let html = act(&Act {
        verb: Verb::Deny,
        target: "7",
        label: "deny",
        confirm: q,
        hidden: &[("option", q)],
        inputs: &[],
    })
    .into_string();
    assert!(!html.contains("\" onmouseover=\""), "{html}");
    assert!(html.contains("&quot; onmouseover=&quot;alert(1)"), "{html}");
}

#[test]
fn the_token_is_in_the_page_not_in_its_panes() {
    // The panes are shared by every session's stream: the token is only in the page's `<meta>`
    // (the script's header) and the log-out form (a plain post), both outside the panes.
    for (name, html) in [
        ("main", main_page::page(&main_view(), CSRF).into_string()),
        ("agent", agent_page::page(&agent_view(), CSRF).into_string()),
    ] {
        assert_eq!(html.matches(CSRF).count(), 2, "{name}: {html}");
        let logout = &html[html.find("<form class=\"logout\"").expect("a logout form")..];
        assert!(
            logout.starts_with(&format!(
                "<form class=\"logout\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{CSRF}\">"
            )),
            "{name}: {logout}"
        );
        let top = &html[html.find("<div id=\"top\"").expect("the top pane")..];
        assert!(
            top.find("</div>") < top.find("<form class=\"logout\""),
            "{name}: the logout form is outside the top pane"
        );
    }
    for p in main_page::panes(&main_view())
        .into_iter()
        .chain(agent_page::panes(&agent_view()))
    {
        let html = p.html.into_string();
        assert!(!html.contains("name=\"csrf\""), "pane {}: {html}", p.id);
    }
}

#[test]
fn each_pane_is_its_own_outermost_element() {
    let panes = main_page::panes(&main_view())
        .into_iter()
        .chain(agent_page::panes(&agent_view()));
    let mut ids = Vec::new();
    for p in panes {
        let html = p.html.into_string();
        let open = &html[..html.find('>').expect("an element")];
        assert!(
            open.contains(&format!("id=\"{}\"", p.id)),
            "pane {}: {open}",
            p.id
        );
        assert!(
            open.contains(&format!("data-pane=\"{}\"", p.id)),
            "pane {}: {open}",
            p.id
        );
        ids.push(p.id);
    }
    assert_eq!(
        ids,
        [
            "top",
            "agents",
            "approvals",
            "questions",
            "schedules",
            "peers",
            "audit",
            "top",
            "agent-head",
            "timeline",
            "turns",
            "log"
        ]
    );
}

#[test]
fn the_main_page_has_the_contracts_ids_and_classes() {
    let html = main_page::page(&main_view(), CSRF).into_string();
    for want in [
        "<!DOCTYPE html>",
        "data-stream=\"/events\"",
        "<meta name=\"csrf-token\" content=\"tok-123\">",
        "href=\"/assets/console.css\"",
        "src=\"/assets/console.js\" defer",
        "<div id=\"top\" data-pane=\"top\">",
        "<nav id=\"tabs\">",
        "href=\"#swarm\"",
        "href=\"#waiting\"",
        "href=\"#schedules\"",
        "href=\"#peers\"",
        "href=\"#audit\"",
        "<section class=\"tab\" id=\"swarm\">",
        "<section class=\"tab\" id=\"waiting\">",
        "<section class=\"tab pane\" id=\"schedules\" data-pane=\"schedules\">",
        "<section class=\"tab pane\" id=\"peers\" data-pane=\"peers\">",
        "<section class=\"tab pane\" id=\"audit\" data-pane=\"audit\">",
        "<tr id=\"agent-echo\">",
        "<td class=\"name\"><a href=\"/agent/echo\">echo</a></td>",
        "<td class=\"state\"><span class=\"st st-thinking\">thinking</span></td>",
        "<time data-since-ms=\"1700000000000\">42 s</time>",
        "<td class=\"queue\">3</td>",
        "<td class=\"cost\">$1.50</td>",
        "<td class=\"crash\">",
        "<td class=\"model\">",
        "<article class=\"card approval\" id=\"approval-7\">",
        "<pre class=\"diff\">",
        "<a class=\"matrix\" href=\"https://matrix.to/#/!a:hive.test/$q\" rel=\"noreferrer\" target=\"_blank\">",
        "<span class=\"add\">+added",
        "<span class=\"del\">-removed",
        "<article class=\"card question\" id=\"question-3\">",
        "action=\"/act/answer/3\"",
        "name=\"option\" value=\"1\"",
        "name=\"option\" value=\"2\"",
        "name=\"text\"",
        "<form class=\"logout\" method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"tok-123\">",
        "<div id=\"toasts\" aria-live=\"polite\">",
        "<dialog id=\"confirm\">",
        "<p id=\"confirm-text\">",
        "<button id=\"confirm-no\"",
        "<button id=\"confirm-yes\"",
        "<noscript>",
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
    // The idle agent has no turn cell's time.
    let quiet = &html[html.find("id=\"agent-quiet\"").expect("its row")..];
    let quiet = &quiet[..quiet.find("</tr>").expect("its row ends")];
    assert!(
        quiet.contains("<td class=\"turn\"><span class=\"none\">-</span></td>"),
        "{quiet}"
    );
}

#[test]
fn the_agent_page_has_the_contracts_ids_and_classes() {
    let html = agent_page::page(&agent_view(), CSRF).into_string();
    for want in [
        "data-stream=\"/events?agent=echo\"",
        "<meta name=\"csrf-token\" content=\"tok-123\">",
        "<div id=\"top\" data-pane=\"top\">",
        "href=\"/#swarm\"",
        "id=\"agent-head\"",
        "id=\"timeline\"",
        "<div class=\"msg\" data-event=\"$m1\">",
        "id=\"turns\"",
        "id=\"log\"",
        "<pre class=\"log\">line one\n",
        "action=\"/act/say/echo\"",
        "action=\"/act/destroy/echo\"",
        "name=\"why\"",
        "<div id=\"toasts\" aria-live=\"polite\">",
        "<dialog id=\"confirm\">",
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
}

/// Each `form.act` of `html`: (its action, whether it asks first, its button's name).
fn forms(html: &str) -> Vec<(String, bool, String)> {
    html.split("<form class=\"act\"")
        .skip(1)
        .map(|f| {
            let f = &f[..f.find("</form>").expect("a form ends")];
            let attr = |name: &str| {
                let start = f.find(&format!("{name}=\"")).map(|i| i + name.len() + 2)?;
                Some(f[start..start + f[start..].find('"')?].to_owned())
            };
            let button = &f[f.find("<button").expect("a button")..];
            let name = {
                let start = button.find("name=\"").expect("a named button") + 6;
                button[start..start + button[start..].find('"').expect("ends")].to_owned()
            };
            (
                attr("action").expect("an action"),
                attr("data-confirm").is_some(),
                name,
            )
        })
        .collect()
}

#[test]
fn only_destructive_forms_ask_once_more() {
    struct Case {
        verb: Verb,
        confirms: bool,
    }
    let cases = [
        Case {
            verb: Verb::Approve,
            confirms: false,
        },
        Case {
            verb: Verb::Deny,
            confirms: true,
        },
        Case {
            verb: Verb::Purge,
            confirms: true,
        },
        Case {
            verb: Verb::Answer,
            confirms: false,
        },
        Case {
            verb: Verb::Say,
            confirms: false,
        },
        Case {
            verb: Verb::Stop,
            confirms: true,
        },
        Case {
            verb: Verb::Start,
            confirms: false,
        },
        Case {
            verb: Verb::Restart,
            confirms: false,
        },
        Case {
            verb: Verb::Cancel,
            confirms: false,
        },
        Case {
            verb: Verb::Compact,
            confirms: false,
        },
        Case {
            verb: Verb::NewSession,
            confirms: false,
        },
        Case {
            verb: Verb::Destroy,
            confirms: true,
        },
    ];
    assert_eq!(cases.len(), Verb::ALL.len(), "every verb has its row");
    for c in &cases {
        assert_eq!(c.verb.confirms(), c.confirms, "{}", c.verb.as_str());
    }
    // And so the pages draw them: every form of both pages, by its button's name.
    let mut all = forms(&main_page::page(&main_view(), CSRF).into_string());
    all.extend(forms(&agent_page::page(&agent_view(), CSRF).into_string()));
    let mut seen: Vec<&str> = Vec::new();
    for (action, asks, button) in &all {
        let verb = Verb::ALL
            .into_iter()
            .find(|v| v.as_str() == button)
            .unwrap_or_else(|| panic!("{action}: a button named {button}"));
        assert!(
            action.starts_with(&format!("/act/{button}/")),
            "{action} {button}"
        );
        // An approve asks too on a destroy, revive or purge request (card 9 is a destroy).
        let kept_approve = verb == Verb::Approve && action == "/act/approve/9";
        assert_eq!(*asks, verb.confirms() || kept_approve, "{action}");
        seen.push(verb.as_str());
    }
    for v in Verb::ALL {
        assert!(
            seen.contains(&v.as_str()),
            "no {} form is drawn",
            v.as_str()
        );
    }
    let deny = all
        .iter()
        .find(|(a, _, _)| a == "/act/deny/7")
        .expect("request 7 can be denied");
    assert!(deny.1);
    let html = main_page::page(&main_view(), CSRF).into_string();
    assert!(html.contains("data-confirm=\"deny request #7?\""), "{html}");
    assert!(
        html.contains("data-confirm=\"approve request #9: destroy quiet?\""),
        "{html}"
    );
    assert!(
        all.iter()
            .any(|(a, asks, _)| a == "/act/approve/7" && !asks),
        "a config request's approve does not ask"
    );
}

#[test]
fn approving_a_kept_state_request_asks_once_more() {
    struct Case {
        kind: ApprovalKind,
        asks: bool,
    }
    let cases = [
        Case {
            kind: ApprovalKind::InitConfig,
            asks: false,
        },
        Case {
            kind: ApprovalKind::ApplyCommit,
            asks: false,
        },
        Case {
            kind: ApprovalKind::Destroy,
            asks: true,
        },
        Case {
            kind: ApprovalKind::Revive,
            asks: true,
        },
        Case {
            kind: ApprovalKind::Purge,
            asks: true,
        },
    ];
    for c in cases {
        assert_eq!(
            super::model::approve_asks(c.kind),
            c.asks,
            "{}",
            c.kind.as_str()
        );
    }
}

#[test]
fn a_kept_agent_has_no_controls() {
    let mut v = agent_view();
    v.agent.state = Shown::Kept;
    let html = agent_page::page(&v, CSRF).into_string();
    assert!(forms(&html).is_empty(), "{html}");
}

// --- the routes, with a core on a temp dir ---

fn spec(name: &str) -> AgentSpec {
    let toml = "[brain]\nkind = \"scripted\"\n";
    let dir = std::path::Path::new("/nonexistent");
    AgentSpec::parse(
        AgentName::parse(name).expect("valid"),
        dir,
        &dir.join("agent.toml"),
        toml,
    )
    .expect("a scripted agent parses")
}

fn test_core() -> crate::c0re::test_core::TestCore {
    crate::c0re::test_core::test_core(vec![spec("echo")])
}

async fn get(core: &Core, uri: &str) -> (StatusCode, String) {
    let app = super::routes(core.clone()).layer(axum::Extension(Csrf(CSRF.into())));
    let resp = app
        .oneshot(Request::get(uri).body(Body::empty()).expect("a request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("the body is read");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

#[tokio::test]
async fn the_main_page_shows_the_hives_agents() {
    let t = test_core();
    let (status, html) = get(&t.core, "/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("<tr id=\"agent-echo\">"), "{html}");
    assert!(
        html.contains("<td class=\"state\"><span class=\"st st-starting\">starting</span></td>"),
        "{html}"
    );
    assert!(
        html.contains("<meta name=\"csrf-token\" content=\"tok-123\">"),
        "{html}"
    );
    assert!(html.contains("no request waits for an approval."), "{html}");
    let panes = super::main_panes(&t.core).expect("the panes are read");
    assert_eq!(panes.len(), 7);
}

#[tokio::test]
async fn an_unknown_or_invalid_agent_is_not_found() {
    let t = test_core();
    for uri in ["/agent/Not%20A%20Name", "/agent/nobody", "/agent/..%2Fetc"] {
        let (status, html) = get(&t.core, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {html}");
        assert!(html.contains("is not an agent of this hive"), "{uri}");
    }
    let nobody = AgentName::parse("nobody").expect("a valid name");
    assert!(
        super::agent_panes(&t.core, &nobody)
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_message_in_an_agents_room_shows_on_its_page() {
    let t = test_core();
    let echo = AgentName::parse("echo").expect("valid");
    let room = ruma::OwnedRoomId::try_from("!echo:hive.test").expect("a room id");
    t.core
        .rooms()
        .add(RoomKey::Inbox(echo.clone()), room.clone());
    // Its history counts as read (there is no homeserver here): only what arrives shows.
    t.core.views().timelines().loaded(room.as_str(), Vec::new());
    let ev = |id: &str, body: &str| {
        serde_json::from_value::<crate::c0re::routing::TimelineEvent>(json!({
            "type": "m.room.message", "event_id": id, "room_id": room.as_str(),
            "sender": "@op:hive.test", "origin_server_ts": 1_700_000_000_000i64,
            "content": { "msgtype": "m.text", "body": body },
        }))
        .expect("an event")
    };
    t.core
        .accept(&[ev("$hello", HOSTILE)], crate::store::now_us())
        .expect("accepted");
    let panes = super::agent_panes(&t.core, &echo)
        .expect("read")
        .expect("echo is known");
    let timeline = panes
        .iter()
        .find(|p| p.id == "timeline")
        .expect("a timeline pane")
        .html
        .clone()
        .into_string();
    assert!(
        timeline.contains("<div class=\"msg\" data-event=\"$hello\">"),
        "{timeline}"
    );
    assert_escaped(&timeline, "the timeline");
    let (status, html) = get(&t.core, "/agent/echo").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("data-event=\"$hello\""), "{html}");
    assert!(html.contains("action=\"/act/cancel/echo\""), "{html}");
}

#[tokio::test]
async fn a_secret_in_a_message_is_not_shown() {
    let t = test_core();
    let echo = AgentName::parse("echo").expect("valid");
    let room = ruma::OwnedRoomId::try_from("!echo:hive.test").expect("a room id");
    t.core
        .rooms()
        .add(RoomKey::Inbox(echo.clone()), room.clone());
    t.core.views().timelines().loaded(room.as_str(), Vec::new());
    // The appservice's own token is a secret the filter knows.
    let token = t.core.hs_token().to_owned();
    let ev = serde_json::from_value::<crate::c0re::routing::TimelineEvent>(json!({
        "type": "m.room.message", "event_id": "$leak", "room_id": room.as_str(),
        "sender": "@echo:hive.test", "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": format!("the token is {token}") },
    }))
    .expect("an event");
    t.core
        .accept(&[ev], crate::store::now_us())
        .expect("accepted");
    let (status, html) = get(&t.core, "/agent/echo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-event=\"$leak\""), "{html}");
    assert!(!html.contains(&token), "the token is redacted");
}

#[tokio::test]
async fn a_rooms_history_is_read_once_then_kept_by_what_arrives() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A homeserver that answers `/messages` (newest first, one event it cannot parse) and
    // counts the calls.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let hs = axum::Router::new().route(
        "/_matrix/client/v3/rooms/{room}/messages",
        axum::routing::get(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({
                    "start": "s", "end": "e",
                    "chunk": [
                        { "type": "m.room.message", "event_id": "$second", "room_id": "!echo:hive.test",
                          "sender": "@echo:hive.test", "origin_server_ts": 20,
                          "content": { "msgtype": "m.text", "body": "the reply" } },
                        { "type": "m.room.message", "event_id": "$junk" },
                        { "type": "m.room.message", "event_id": "$first", "room_id": "!echo:hive.test",
                          "sender": "@op:hive.test", "origin_server_ts": 10,
                          "content": { "msgtype": "m.text", "body": "the question" } },
                    ],
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, hs).await });
    let mut cfg = crate::config::Config::load(None).expect("the built-in configuration is valid");
    cfg.homeserver_url = format!("http://{addr}/").parse().expect("a url");
    let t = crate::c0re::test_core::test_core_with(cfg, vec![spec("echo")]);
    let core = t.core.clone();
    let echo = AgentName::parse("echo").expect("valid");
    let room = ruma::OwnedRoomId::try_from("!echo:hive.test").expect("a room id");
    core.rooms().add(RoomKey::Inbox(echo), room.clone());
    let (status, html) = get(&core, "/agent/echo").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (first, second) = (
        html.find("data-event=\"$first\"")
            .expect("the older message"),
        html.find("data-event=\"$second\"")
            .expect("the newer message"),
    );
    assert!(first < second, "oldest first");
    assert!(!html.contains("could not be read"), "{html}");
    // What arrives after is the transaction path's: the page is drawn again without a call.
    let ev = serde_json::from_value::<crate::c0re::routing::TimelineEvent>(json!({
        "type": "m.room.message", "event_id": "$third", "room_id": room.as_str(),
        "sender": "@op:hive.test", "origin_server_ts": 30,
        "content": { "msgtype": "m.text", "body": "thanks" },
    }))
    .expect("an event");
    core.accept(&[ev], crate::store::now_us())
        .expect("accepted");
    let (_, html) = get(&core, "/agent/echo").await;
    assert!(html.contains("data-event=\"$third\""), "{html}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the history is read once");
}

#[test]
fn the_stylesheet_draws_what_the_pages_need() {
    let css = include_str!("../assets/console.css");
    for want in [
        "--ground: #0a0a0c",
        "#ffb000",
        "#c39bd3",
        "#00ff66",
        "body::after",
        "repeating-linear-gradient",
        "pointer-events: none",
        ":focus-visible",
        "button.busy::after",
        ".toast.ok",
        ".toast.err",
        "dialog#confirm",
        ".st-thinking",
        ".st-idle",
        ".st-crashed",
        "section:target",
    ] {
        assert!(css.contains(want), "the stylesheet has no {want:?}");
    }
    assert!(
        !css.contains("@import") && !css.contains("url("),
        "nothing is fetched from elsewhere"
    );
}

#[tokio::test]
async fn what_the_store_holds_shows_on_the_main_page() {
    let t = test_core();
    let store = t.core.store();
    // A destroy request, filed and posted; one still being filed (not shown).
    let new = |summary| crate::store::NewApproval {
        kind: ApprovalKind::Destroy,
        agent: "echo",
        sha: "0123456789abcdef0123456789abcdef01234567",
        requester: "hm1nd",
        summary,
        required: 1,
        ttl_us: 3_600_000_000,
    };
    let shown = store.create_approval(&new(HOSTILE)).expect("filed");
    assert!(store.complete_approval(shown).expect("completed"));
    store.set_request_event(shown, "$req").expect("posted");
    let filing = store.create_approval(&new("half filed")).expect("filed");
    // A question with two options, posted.
    let q = store
        .create_question(
            "echo",
            "which way?",
            &["left".into(), "right".into()],
            3_600_000_000,
        )
        .expect("asked");
    store.set_question_event(q, "$q").expect("posted");
    store
        .record_crash("echo", "exit status 3")
        .expect("recorded");
    let (status, html) = get(&t.core, "/").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let card = &html[html
        .find(&format!("id=\"approval-{shown}\""))
        .expect("the posted request's card")..];
    let card = &card[..card.find("</article>").expect("it ends")];
    assert!(
        card.contains("to destroy"),
        "its text, as Matrix shows it: {card}"
    );
    assert!(
        card.contains(&format!("action=\"/act/approve/{shown}\"")),
        "{card}"
    );
    assert!(
        card.contains(&format!("action=\"/act/deny/{shown}\"")),
        "{card}"
    );
    assert_escaped(card, "the request's card");
    assert!(
        !html.contains(&format!("id=\"approval-{filing}\"")),
        "a request still being filed waits on nobody"
    );
    assert!(html.contains(&format!("id=\"question-{q}\"")), "{html}");
    assert!(html.contains("2. right"), "{html}");
    assert!(
        html.contains("<span class=\"crash\">exit status 3</span>"),
        "{html}"
    );
    assert!(
        html.contains("2 waiting on you"),
        "the header counts the request and the question: {html}"
    );
    // The audit shows the filings, newest first.
    let audit = &html[html.find("id=\"audit\"").expect("the audit")..];
    let (newer, older) = (
        audit.find("half filed").expect("the second filing"),
        audit.find("&lt;script&gt;").expect("the first filing"),
    );
    assert!(newer < older, "newest first");
}
