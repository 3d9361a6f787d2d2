//! The appservice endpoints through the router itself (`oneshot`, no network, no homeserver):
//! a core on a temp data dir with no agents.

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{MAX_TRANSACTION, Unauthorized, check_hs_token, router};
use crate::c0re::Core;

fn test_core() -> crate::c0re::test_core::TestCore {
    crate::c0re::test_core::test_core(Vec::new())
}

/// Sends one request through a fresh router; the status and the body as JSON (`Null` if the
/// body is not JSON).
async fn call(core: &Core, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(core.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("the body is read");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn request(method: &str, uri: &str, auth: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("a valid request")
}

fn txn_uri(id: &str) -> String {
    format!("/_matrix/app/v1/transactions/{id}")
}

fn event(id: &str) -> Value {
    json!({
        "type": "m.room.message", "event_id": id, "room_id": "!room:localhost",
        "sender": "@someone:localhost", "origin_server_ts": 1,
        "content": { "msgtype": "m.text", "body": "hello" },
    })
}

#[test]
fn the_token_is_a_bearer_header_compared_exactly() {
    struct Case {
        name: &'static str,
        header: Option<&'static str>,
        want: Result<(), Unauthorized>,
    }
    let cases = [
        Case {
            name: "the token",
            header: Some("Bearer s3cret"),
            want: Ok(()),
        },
        Case {
            name: "no header",
            header: None,
            want: Err(Unauthorized::Missing),
        },
        Case {
            name: "another token",
            header: Some("Bearer nope"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "a longer token",
            header: Some("Bearer s3cretx"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "a prefix of it",
            header: Some("Bearer s3cre"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "an empty header",
            header: Some(""),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "the bare token",
            header: Some("s3cret"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "lower-case scheme",
            header: Some("bearer s3cret"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "another scheme",
            header: Some("Basic s3cret"),
            want: Err(Unauthorized::Wrong),
        },
        Case {
            name: "two spaces",
            header: Some("Bearer  s3cret"),
            want: Err(Unauthorized::Wrong),
        },
    ];
    for c in cases {
        let header = c
            .header
            .map(|h| HeaderValue::from_str(h).expect("a header value"));
        assert_eq!(
            check_hs_token(header.as_ref(), "s3cret"),
            c.want,
            "{}",
            c.name
        );
    }
    let binary = HeaderValue::from_bytes(b"Bearer \xffs3cret").expect("an opaque header value");
    assert_eq!(
        check_hs_token(Some(&binary), "s3cret"),
        Err(Unauthorized::Wrong)
    );
}

#[tokio::test]
async fn every_endpoint_wants_the_token() {
    let t = test_core();
    let endpoints = [
        ("PUT", txn_uri("1"), r#"{"events":[]}"#),
        (
            "GET",
            "/_matrix/app/v1/users/@echo:localhost".to_owned(),
            "",
        ),
        (
            "GET",
            "/_matrix/app/v1/rooms/%23hive-x:localhost".to_owned(),
            "",
        ),
        ("POST", "/_matrix/app/v1/ping".to_owned(), "{}"),
    ];
    for (method, uri, body) in endpoints {
        let (status, v) = call(&t.core, request(method, &uri, None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(v["errcode"], "M_UNAUTHORIZED", "{method} {uri}");
        for wrong in [
            "Bearer not-the-token",
            &format!("Bearer {}x", t.tokens.hs_token),
        ] {
            let (status, v) = call(&t.core, request(method, &uri, Some(wrong), body)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_eq!(v["errcode"], "M_FORBIDDEN", "{method} {uri}");
        }
        // The deprecated query parameter is not a credential here.
        let sep = if uri.contains('?') { '&' } else { '?' };
        let with_query = format!("{uri}{sep}access_token={}", t.tokens.hs_token);
        let (status, _) = call(&t.core, request(method, &with_query, None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {with_query}");
    }
}

#[tokio::test]
async fn a_transaction_is_persisted_and_answered() {
    let t = test_core();
    t.core.rooms().set_ready();
    let auth = format!("Bearer {}", t.tokens.hs_token);
    let body = json!({ "events": [event("$one"), {"not": "an event"}, 7] }).to_string();
    let (status, v) = call(
        &t.core,
        request("PUT", &txn_uri("1"), Some(&auth), body.clone()),
    )
    .await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));
    assert!(
        t.core.store().seen("$one").expect("the store reads"),
        "the event is recorded"
    );
    // The same transaction again, and a body without events.
    let (status, v) = call(&t.core, request("PUT", &txn_uri("1"), Some(&auth), body)).await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));
    let (status, v) = call(&t.core, request("PUT", &txn_uri("2"), Some(&auth), "{}")).await;
    assert_eq!((status, v), (StatusCode::OK, json!({})));
}

#[tokio::test]
async fn a_transaction_before_the_rooms_are_known_is_sent_again() {
    let t = test_core();
    let auth = format!("Bearer {}", t.tokens.hs_token);
    let body = json!({ "events": [event("$early")] }).to_string();
    let (status, v) = call(&t.core, request("PUT", &txn_uri("1"), Some(&auth), body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["errcode"], "M_UNKNOWN");
    assert!(!t.core.store().seen("$early").expect("the store reads"));
}

#[tokio::test]
async fn a_malformed_transaction_is_400() {
    let t = test_core();
    t.core.rooms().set_ready();
    let auth = format!("Bearer {}", t.tokens.hs_token);
    for body in [
        "",
        "not json",
        "{\"events\": 3}",
        "{\"events\": null}",
        "\"events\"",
        "{\"events\": [",
    ] {
        let (status, v) = call(&t.core, request("PUT", &txn_uri("1"), Some(&auth), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(v["errcode"], "M_NOT_JSON", "{body:?}");
    }
}

#[tokio::test]
async fn body_limits() {
    let t = test_core();
    t.core.rooms().set_ready();
    let auth = format!("Bearer {}", t.tokens.hs_token);
    // Bigger than axum's default limit, within the transaction's: accepted.
    let pad = "x".repeat(3 << 20);
    let big = json!({ "events": [event("$big")], "pad": pad }).to_string();
    let (status, _) = call(&t.core, request("PUT", &txn_uri("big"), Some(&auth), big)).await;
    assert_eq!(status, StatusCode::OK);
    // Beyond the transaction limit: 413, read before (and so whatever) the token.
    let huge = vec![b' '; MAX_TRANSACTION + 1];
    for auth in [Some(auth.as_str()), None] {
        let (status, _) = call(
            &t.core,
            request("PUT", &txn_uri("huge"), auth, huge.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "auth {auth:?}");
    }
    // The other endpoints keep axum's default.
    let (status, _) = call(
        &t.core,
        request(
            "POST",
            "/_matrix/app/v1/ping",
            Some(&auth),
            vec![b' '; 3 << 20],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn queries_ping_and_unknown_paths() {
    let t = test_core();
    let auth = format!("Bearer {}", t.tokens.hs_token);
    struct Case {
        name: &'static str,
        method: &'static str,
        uri: &'static str,
        want: (StatusCode, Value),
    }
    let not_found = |errcode: &str, error: &str| {
        (
            StatusCode::NOT_FOUND,
            json!({ "errcode": errcode, "error": error }),
        )
    };
    let cases = [
        Case {
            name: "a user who is no agent",
            method: "GET",
            uri: "/_matrix/app/v1/users/@ghost:localhost",
            want: not_found("M_NOT_FOUND", "no such user"),
        },
        Case {
            name: "no user id at all",
            method: "GET",
            uri: "/_matrix/app/v1/users/ghost",
            want: not_found("M_NOT_FOUND", "no such user"),
        },
        Case {
            name: "a room alias",
            method: "GET",
            uri: "/_matrix/app/v1/rooms/%23hive-c0re:localhost",
            want: not_found("M_NOT_FOUND", "no such room"),
        },
        Case {
            name: "ping",
            method: "POST",
            uri: "/_matrix/app/v1/ping",
            want: (StatusCode::OK, json!({})),
        },
        Case {
            name: "an unknown path",
            method: "GET",
            uri: "/_matrix/app/v1/thirdparty/protocol/irc",
            want: not_found("M_UNRECOGNIZED", "unrecognized request"),
        },
    ];
    for c in cases {
        let got = call(&t.core, request(c.method, c.uri, Some(&auth), "{}")).await;
        assert_eq!(got, c.want, "{}", c.name);
    }
}
