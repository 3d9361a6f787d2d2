//! The webhook: [`judge`] as a table, then through the appservice router itself (`oneshot`, no
//! network, no homeserver) on a core whose hive.toml has one Forgejo server.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use futures_util::FutureExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Verdict, judge};
use crate::c0re::Core;
use crate::c0re::server::router;
use crate::config::{Config, ForgeServer};
use crate::forge::webhook::{Delivery, sign};

const SECRET: &str = "webhook-s3cret";

/// A Gitea `PullRequestPayload` for `repo` (what Forgejo sends when a pull request opens).
fn pr_opened(repo: &str) -> Value {
    let user = |login: &str| json!({ "id": 1, "login": login, "username": login });
    json!({
        "action": "opened", "number": 5,
        "pull_request": { "id": 50, "number": 5, "user": user("alice"), "title": "Fix the parser",
                          "body": "", "labels": [], "state": "open", "merged": false,
                          "html_url": format!("http://forge.test/{repo}/pulls/5"),
                          "head": { "label": "fix", "ref": "fix", "sha": "abc123" } },
        "repository": { "id": 1, "full_name": repo, "html_url": format!("http://forge.test/{repo}") },
        "sender": user("alice"), "commit_id": "", "review": null,
    })
}

/// Headers as Forgejo sends them: its own and the `X-Gitea-*` twins.
fn forgejo_headers(event: &str, id: &str, signature: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("X-Forgejo-Event".into(), event.into()),
        ("X-Gitea-Event".into(), event.into()),
        ("X-Forgejo-Delivery".into(), id.into()),
        ("X-Gitea-Delivery".into(), id.into()),
        ("Content-Type".into(), "application/json".into()),
    ];
    if let Some(s) = signature {
        h.push(("X-Forgejo-Signature".into(), s.into()));
        h.push(("X-Gitea-Signature".into(), s.into()));
    }
    h
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
            HeaderValue::from_str(v).expect("a header value"),
        );
    }
    m
}

/// The one server of [`forge_config`] (read from a hive.toml, so fields added later default).
fn server() -> ForgeServer {
    let dir = tempfile::tempdir().expect("a temp dir");
    forge_config(dir.path(), 1 << 20).forge.servers[0].clone()
}

#[test]
fn the_verdict_follows_the_rules_in_order() {
    let body = serde_json::to_vec(&pr_opened("acme/widgets")).expect("json");
    let good = sign(SECRET.as_bytes(), &body);
    let other = serde_json::to_vec(&pr_opened("acme/other")).expect("json");
    let other_sig = sign(SECRET.as_bytes(), &other);
    let ping = br#"{"zen":"hi"}"#.to_vec();
    let ping_sig = sign(SECRET.as_bytes(), &ping);
    let bad_json = b"{not json".to_vec();
    let bad_json_sig = sign(SECRET.as_bytes(), &bad_json);
    let srv = server();

    #[derive(Debug, PartialEq)]
    enum Want {
        Refuse(StatusCode),
        Ignore(&'static str),
        Record(&'static str),
    }
    struct Case<'a> {
        name: &'a str,
        server: Option<&'a ForgeServer>,
        method: Method,
        headers: Vec<(String, String)>,
        body: &'a [u8],
        want: Want,
    }
    let cases = [
        Case {
            name: "a good delivery",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &body,
            want: Want::Record("d-1"),
        },
        Case {
            name: "an unknown server, even with a good signature",
            server: None,
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &body,
            want: Want::Refuse(StatusCode::NOT_FOUND),
        },
        Case {
            name: "not POST",
            server: Some(&srv),
            method: Method::GET,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &body,
            want: Want::Refuse(StatusCode::METHOD_NOT_ALLOWED),
        },
        Case {
            name: "no signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", None),
            body: &body,
            want: Want::Refuse(StatusCode::UNAUTHORIZED),
        },
        Case {
            name: "a wrong signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&other_sig)),
            body: &body,
            want: Want::Refuse(StatusCode::FORBIDDEN),
        },
        Case {
            name: "a signature that is not hex",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some("sha256=nope")),
            body: &body,
            want: Want::Refuse(StatusCode::FORBIDDEN),
        },
        Case {
            name: "a bad signature on a body that is not JSON: refused for the signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &bad_json,
            want: Want::Refuse(StatusCode::FORBIDDEN),
        },
        Case {
            name: "no delivery id",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&good))
                .into_iter()
                .filter(|(k, _)| !k.ends_with("Delivery"))
                .collect(),
            body: &body,
            want: Want::Refuse(StatusCode::BAD_REQUEST),
        },
        Case {
            name: "a signed body that is not JSON",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&bad_json_sig)),
            body: &bad_json,
            want: Want::Refuse(StatusCode::BAD_REQUEST),
        },
        Case {
            name: "an event the hive does not follow",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("push", "d-1", Some(&ping_sig)),
            body: &ping,
            want: Want::Ignore("push events are not followed"),
        },
        Case {
            name: "a repository the server does not follow",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&other_sig)),
            body: &other,
            want: Want::Ignore("acme/other is not followed"),
        },
    ];
    for c in cases {
        let headers = header_map(&c.headers);
        let got = match judge(
            "forgejo",
            &c.method,
            c.server.map(|s| (s, SECRET.as_bytes())),
            &headers,
            c.body,
        ) {
            Verdict::Refuse { status, .. } => Want::Refuse(status),
            Verdict::Ignore(why) => {
                assert!(
                    matches!(c.want, Want::Ignore(w) if w == why),
                    "{}: {why}",
                    c.name
                );
                continue;
            }
            Verdict::Record { delivery, event } => {
                assert_eq!(event.item.to_string(), "acme/widgets#5", "{}", c.name);
                assert_eq!(
                    delivery,
                    Delivery {
                        id: "d-1".into(),
                        event: "pull_request".into()
                    }
                );
                Want::Record("d-1")
            }
        };
        assert_eq!(got, c.want, "{}", c.name);
    }
}

/// A hive.toml in `dir` that follows `acme/widgets` on a Forgejo server named `forgejo`, its
/// webhook secret in a file beside it (with a trailing newline, as `echo` writes it).
fn forge_config(dir: &std::path::Path, max_webhook_bytes: usize) -> Config {
    std::fs::write(dir.join("secret"), format!("{SECRET}\n")).expect("written");
    std::fs::write(dir.join("token"), "forge-token\n").expect("written");
    let toml = format!(
        r#"
[forge]
max_webhook_bytes = {max_webhook_bytes}

[[forge.servers]]
name = "forgejo"
kind = "forgejo"
url = "http://127.0.0.1:3000/"
token_file = "token"
webhook_secret_file = "secret"
repos = ["acme/widgets"]
"#
    );
    let path = dir.join("hive.toml");
    std::fs::write(&path, toml).expect("written");
    Config::load(Some(&path)).expect("a valid hive.toml")
}

/// A core on [`forge_config`]; the config's dir lives as long as it.
fn forge_core(max_webhook_bytes: usize) -> (crate::c0re::test_core::TestCore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let cfg = forge_config(dir.path(), max_webhook_bytes);
    (crate::c0re::test_core::test_core_with(cfg, Vec::new()), dir)
}

fn post(server: &str, headers: &[(String, String)], body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder()
        .method("POST")
        .uri(format!("/_hyperhive/forge/{server}"));
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    b.body(Body::from(body)).expect("a valid request")
}

/// A delivery of `body` signed as Forgejo signs it.
fn signed(event: &str, id: &str, body: &Value) -> Request<Body> {
    let bytes = serde_json::to_vec(body).expect("json");
    let sig = sign(SECRET.as_bytes(), &bytes);
    post("forgejo", &forgejo_headers(event, id, Some(&sig)), bytes)
}

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

fn pending(core: &Core) -> Vec<(String, String, String)> {
    core.store()
        .pending_deliveries(100)
        .expect("read")
        .into_iter()
        .map(|p| (p.server, p.delivery_id, p.event.item.to_string()))
        .collect()
}

#[tokio::test]
async fn a_good_delivery_is_recorded_once_and_wakes_the_task() {
    let (t, _dir) = forge_core(1 << 20);
    let core = &t.core;
    let (status, body) = call(
        core,
        signed("pull_request", "d-1", &pr_opened("acme/widgets")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "ok": true, "delivery": "d-1" }));
    assert_eq!(
        pending(core),
        vec![("forgejo".into(), "d-1".into(), "acme/widgets#5".into())]
    );
    // The task was woken: the permit is waiting (taken at the first poll).
    assert!(
        core.forge().wake.notified().now_or_never().is_some(),
        "the forge task was woken"
    );

    // A replay: refused, still one row.
    let (status, body) = call(
        core,
        signed("pull_request", "d-1", &pr_opened("acme/widgets")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "error": "delivery d-1 was already received" })
    );
    assert_eq!(pending(core).len(), 1);
}

#[tokio::test]
async fn refusals_record_nothing() {
    let (t, _dir) = forge_core(4096);
    let core = &t.core;
    let body = serde_json::to_vec(&pr_opened("acme/widgets")).expect("json");
    let good = sign(SECRET.as_bytes(), &body);
    let wrong = sign(b"not the secret", &body);

    let (status, answer) = call(
        core,
        post(
            "forgejo",
            &forgejo_headers("pull_request", "d-2", Some(&wrong)),
            body.clone(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a bad signature: {answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not match"))
    );

    let (status, _) = call(
        core,
        post(
            "forgejo",
            &forgejo_headers("pull_request", "d-3", None),
            body.clone(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a missing signature");

    let (status, _) = call(
        core,
        post(
            "gitlab",
            &forgejo_headers("pull_request", "d-4", Some(&good)),
            body.clone(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown server");

    // One byte over the cap, signed right: refused before anything else.
    let mut big = pr_opened("acme/widgets");
    let pad = 4096 - serde_json::to_vec(&big).expect("json").len() + 1 - r#","pad":"""#.len();
    big["pad"] = json!("x".repeat(pad));
    let big = serde_json::to_vec(&big).expect("json");
    assert_eq!(big.len(), 4097, "the cap plus one");
    let big_sig = sign(SECRET.as_bytes(), &big);
    let (status, answer) = call(
        core,
        post(
            "forgejo",
            &forgejo_headers("pull_request", "d-5", Some(&big_sig)),
            big,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "oversized: {answer}");

    let (status, answer) = call(
        core,
        signed("pull_request", "d-6", &pr_opened("acme/other")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({ "ok": true, "ignored": "acme/other is not followed" })
    );

    let (status, answer) = call(core, signed("ping", "d-7", &json!({ "zen": "hi" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({ "ok": true, "ignored": "ping events are not followed" })
    );

    let (status, answer) = call(
        core,
        signed("pull_request", "d-8", &json!({ "action": "opened" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({ "error": "the payload has no pull_request" })
    );

    assert_eq!(pending(core), Vec::new(), "nothing was recorded");

    // At the cap exactly it is taken.
    let mut fits = pr_opened("acme/widgets");
    let pad = 4096 - serde_json::to_vec(&fits).expect("json").len() - r#","pad":"""#.len();
    fits["pad"] = json!("x".repeat(pad));
    assert_eq!(serde_json::to_vec(&fits).expect("json").len(), 4096);
    let (status, _) = call(core, signed("pull_request", "d-9", &fits)).await;
    assert_eq!(status, StatusCode::OK, "the cap itself is allowed");
    assert_eq!(pending(core).len(), 1);
}

#[tokio::test]
async fn other_methods_are_refused_after_the_server_is_known() {
    let (t, _dir) = forge_core(1 << 20);
    let req = Request::builder()
        .method("GET")
        .uri("/_hyperhive/forge/forgejo")
        .body(Body::empty())
        .expect("a request");
    let resp = router(t.core.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let req = Request::builder()
        .method("GET")
        .uri("/_hyperhive/forge/nope")
        .body(Body::empty())
        .expect("a request");
    let (status, _) = call(&t.core, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
