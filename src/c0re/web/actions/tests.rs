//! The actions' router itself (`oneshot`, no homeserver): a core on a temp data dir with no
//! agents and no rooms. Every answer is `200` JSON; refusals say why and are audited.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::routes;
use crate::c0re::Core;

fn test_core() -> crate::c0re::test_core::TestCore {
    crate::c0re::test_core::test_core(Vec::new())
}

async fn post(core: &Core, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .expect("a valid request");
    let resp = routes(core.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("the body is read");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_refusal_is_an_ok_false_answer_and_audited() {
    let t = test_core();
    // No operator account yet: said, naming the files.
    let (status, v) = post(&t.core, "/act/approve/1", "csrf=x").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["ok"], false);
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("web-operator.json") && m.contains("operator.json"),
        "{m}"
    );
    let audit = t.core.store().audit_log(10).unwrap();
    assert!(
        audit.iter().any(|e| e.actor == "web console"
            && e.action == "web approve"
            && e.outcome == "refused"),
        "{audit:?}"
    );

    // The operator gives the console a token.
    std::fs::write(
        super::operator::token_file(t.dir.path()),
        r#"{"user_id": "@operator:localhost", "access_token": "syt_b3A_testtoken_0000"}"#,
    )
    .unwrap();
    struct Case {
        name: &'static str,
        uri: &'static str,
        body: String,
        /// A piece of the refusal.
        want: &'static str,
    }
    let cases = [
        Case {
            name: "an id that is no number",
            uri: "/act/approve/1%20OR%201",
            body: "csrf=x".into(),
            want: "is not a request or question number",
        },
        Case {
            name: "a request that does not exist",
            uri: "/act/deny/41",
            body: "csrf=x".into(),
            want: "there is no request #41",
        },
        Case {
            name: "a question that is not open",
            uri: "/act/answer/5",
            body: "csrf=x&option=1".into(),
            want: "question #5 is not open",
        },
        Case {
            name: "a hostile agent name",
            uri: "/act/say/..",
            body: "csrf=x&text=hi".into(),
            want: "is not an agent name",
        },
        Case {
            name: "an agent the hive does not have",
            uri: "/act/compact/ghost",
            body: "csrf=x".into(),
            want: "ghost is not an agent of this hive",
        },
        Case {
            name: "a command before the rooms exist",
            uri: "/act/restart/ghost",
            body: "csrf=x".into(),
            want: "no #hive-c0re room yet",
        },
        Case {
            name: "a verb the console does not have",
            uri: "/act/revive/ghost",
            body: "csrf=x".into(),
            want: "is not something the console does",
        },
        Case {
            name: "a secret in what would be sent",
            uri: "/act/destroy/ghost",
            body: format!("csrf=x&why=because+{}", t.tokens.hs_token),
            want: "the text shows the appservice's hs_token: not sent",
        },
    ];
    for c in cases {
        let (status, v) = post(&t.core, c.uri, &c.body).await;
        assert_eq!(status, StatusCode::OK, "{}", c.name);
        assert_eq!(v["ok"], false, "{}: {v}", c.name);
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(c.want), "{}: {m}", c.name);
        assert!(
            !m.contains(&t.tokens.hs_token),
            "{}: no secret in the answer",
            c.name
        );
    }
    let audit = t.core.store().audit_log(50).unwrap();
    for (action, detail) in [
        ("web deny", "there is no request #41"),
        ("web say", "is not an agent name"),
        ("web destroy", "not sent"),
    ] {
        assert!(
            audit.iter().any(|e| e.actor == "@operator:localhost"
                && e.action == action
                && e.outcome == "refused"
                && e.detail.as_deref().is_some_and(|d| d.contains(detail))),
            "{action}: {audit:?}"
        );
    }
    assert!(
        audit.iter().all(|e| !e
            .detail
            .as_deref()
            .unwrap_or("")
            .contains(&t.tokens.hs_token)),
        "no secret in the audit"
    );
    let deny = audit.iter().find(|e| e.action == "web deny").unwrap();
    assert_eq!(deny.approval_id, Some(41), "the request is on the record");
}

/// A command's outcome is the core's own: each answer built by the function that makes it on
/// the `!hive` path, and what the toast and the audit make of it.
#[test]
fn a_commands_outcome_is_what_the_core_says_it_did() {
    use crate::agent_spec::AgentName;
    use crate::c0re::agents::lifecycle::{Action, lifecycle_reply};
    use crate::c0re::agents::tool_spec::ToolError;
    use crate::c0re::turn_control::cancel::{CancelRefusal, Cancelled};
    use crate::c0re::turn_control::cancel_reply;
    use crate::store::CancelledTurn;

    struct Case {
        name: &'static str,
        reply: super::replies::Reply,
        ok: bool,
        audit: &'static str,
    }
    let argus = AgentName::parse("argus").expect("a valid name");
    let cancelled = Cancelled {
        agent: argus.clone(),
        turn: CancelledTurn {
            id: 7,
            body: "look into it".into(),
            delivered_us: None,
            pulled: 0,
        },
        secs: 3,
    };
    let cases = [
        Case {
            name: "stopped",
            reply: lifecycle_reply(
                Action::Stop,
                "argus",
                &Ok(("stopped", "stopped argus; nothing waiting".into())),
            ),
            ok: true,
            audit: "sent",
        },
        Case {
            name: "already stopped: nothing changed",
            reply: lifecycle_reply(
                Action::Stop,
                "argus",
                &Ok(("unchanged", "argus is already stopped".into())),
            ),
            ok: false,
            audit: "answered",
        },
        Case {
            name: "a refused start",
            reply: lifecycle_reply(
                Action::Start,
                "ghost",
                &Err(ToolError::Refused(
                    "\"ghost\" is not an agent of this hive".into(),
                )),
            ),
            ok: false,
            audit: "answered",
        },
        Case {
            name: "a turn cancelled",
            reply: cancel_reply(&Ok(Ok(cancelled))).0,
            ok: true,
            audit: "sent",
        },
        Case {
            name: "nothing to cancel",
            reply: cancel_reply(&Ok(Err(CancelRefusal::NoTurn(argus.clone())))).0,
            ok: false,
            audit: "answered",
        },
        Case {
            name: "a turn that started after the cancel",
            reply: cancel_reply(&Ok(Err(CancelRefusal::StartedAfter(argus)))).0,
            ok: false,
            audit: "answered",
        },
        Case {
            name: "cancelling failed",
            reply: cancel_reply(&Err(anyhow::anyhow!("the store is locked"))).0,
            ok: false,
            audit: "answered",
        },
    ];
    for c in cases {
        let text = c.reply.text.clone();
        let done = super::answered(c.reply);
        assert_eq!(
            (done.ok, done.audit, done.message.as_str()),
            (c.ok, c.audit, text.as_str()),
            "{}",
            c.name
        );
    }
}
