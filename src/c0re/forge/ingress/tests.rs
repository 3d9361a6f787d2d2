//! The webhook: [`judge`] as a table, then through the appservice router itself (`oneshot`, no
//! network, no homeserver) on a core whose hive.toml has one Forgejo server.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{IN_FLIGHT, Trust, Verdict, judge};
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

/// The lowercase hex SHA-256 of `body` (checked against a known vector below).
fn sha256_of(body: &[u8]) -> String {
    super::sha256_hex(body)
}

#[test]
fn the_body_digest_is_lowercase_hex_sha256() {
    assert_eq!(
        sha256_of(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn refusals_are_said_at_most_once_a_minute_per_server() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    struct Case {
        name: &'static str,
        server: Option<&'static str>,
        at: u64,
        want: Option<u64>,
    }
    let cases = [
        Case {
            name: "the first is said at once",
            server: Some("forgejo"),
            at: 0,
            want: Some(1),
        },
        Case {
            name: "within the minute: counted",
            server: Some("forgejo"),
            at: 10,
            want: None,
        },
        Case {
            name: "another server has its own tally",
            server: Some("github"),
            at: 20,
            want: Some(1),
        },
        Case {
            name: "names that are no server share one",
            server: None,
            at: 30,
            want: Some(1),
        },
        Case {
            name: "still within the minute",
            server: Some("forgejo"),
            at: 59,
            want: None,
        },
        Case {
            name: "a minute on: the three since, this one included",
            server: Some("forgejo"),
            at: 60,
            want: Some(3),
        },
        Case {
            name: "the minute starts again",
            server: Some("forgejo"),
            at: 119,
            want: None,
        },
        Case {
            name: "the unknown names' minute is theirs",
            server: None,
            at: 95,
            want: Some(1),
        },
    ];
    let mut r = super::Refusals::default();
    for c in cases {
        assert_eq!(r.count(c.server, at(c.at)), c.want, "{}", c.name);
    }
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
        Refuse(StatusCode, Trust),
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
            want: Want::Refuse(StatusCode::NOT_FOUND, Trust::Unsigned),
        },
        Case {
            name: "not POST",
            server: Some(&srv),
            method: Method::GET,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &body,
            want: Want::Refuse(StatusCode::METHOD_NOT_ALLOWED, Trust::Unsigned),
        },
        Case {
            name: "no signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", None),
            body: &body,
            want: Want::Refuse(StatusCode::UNAUTHORIZED, Trust::Unsigned),
        },
        Case {
            name: "a wrong signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&other_sig)),
            body: &body,
            want: Want::Refuse(StatusCode::FORBIDDEN, Trust::Unsigned),
        },
        Case {
            name: "a signature that is not hex",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some("sha256=nope")),
            body: &body,
            want: Want::Refuse(StatusCode::FORBIDDEN, Trust::Unsigned),
        },
        Case {
            name: "a bad signature on a body that is not JSON: refused for the signature",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&good)),
            body: &bad_json,
            want: Want::Refuse(StatusCode::FORBIDDEN, Trust::Unsigned),
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
            want: Want::Refuse(StatusCode::BAD_REQUEST, Trust::Signed),
        },
        Case {
            name: "a signed body that is not JSON",
            server: Some(&srv),
            method: Method::POST,
            headers: forgejo_headers("pull_request", "d-1", Some(&bad_json_sig)),
            body: &bad_json,
            want: Want::Refuse(StatusCode::BAD_REQUEST, Trust::Signed),
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
            Verdict::Refuse { status, trust, .. } => Want::Refuse(status, trust),
            Verdict::Ignore(why) => {
                assert!(
                    matches!(c.want, Want::Ignore(w) if w == why),
                    "{}: {why}",
                    c.name
                );
                continue;
            }
            Verdict::Record {
                delivery,
                event,
                body_sha256,
            } => {
                assert_eq!(event.item.to_string(), "acme/widgets#5", "{}", c.name);
                assert_eq!(body_sha256, sha256_of(c.body), "{}", c.name);
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

    // The same signed body under a fresh id (the id header is not signed): refused too.
    let (status, body) = call(
        core,
        signed("pull_request", "d-fresh", &pr_opened("acme/widgets")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "error": "this payload was already received as delivery d-1" })
    );
    assert_eq!(pending(core).len(), 1, "no row for the replay");
}

#[tokio::test]
async fn a_replay_is_refused_after_its_delivery_is_done_and_pruned() {
    let (t, _dir) = forge_core(1 << 20);
    let core = &t.core;
    let (status, _) = call(
        core,
        signed("pull_request", "d-1", &pr_opened("acme/widgets")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let row = core.store().pending_deliveries(10).expect("read")[0].id;
    assert!(core.store().finish_delivery(row, &[]).expect("finished"));
    // Past any retention: what it said is forgotten, its id and body are not.
    assert_eq!(
        core.store()
            .prune_forge_deliveries(crate::store::now_us() + 1)
            .expect("pruned"),
        1
    );
    let mut edited = pr_opened("acme/widgets");
    edited["action"] = json!("edited");
    let cases = [
        (
            "the same id, another body",
            signed("pull_request", "d-1", &edited),
            "delivery d-1 was already received",
        ),
        (
            "the same body, a fresh id",
            signed("pull_request", "d-2", &pr_opened("acme/widgets")),
            "this payload was already received as delivery d-1",
        ),
    ];
    for (name, req, why) in cases {
        let (status, body) = call(core, req).await;
        assert_eq!(status, StatusCode::CONFLICT, "{name}: {body}");
        assert_eq!(body, json!({ "error": why }), "{name}");
    }
    assert_eq!(pending(core), Vec::new(), "nothing was recorded again");
}

#[tokio::test]
async fn requests_beyond_the_ones_in_flight_are_503_and_record_nothing() {
    let (t, _dir) = forge_core(1 << 20);
    let core = &t.core;
    let busy = core
        .forge()
        .webhook_slots
        .try_acquire_many(u32::try_from(IN_FLIGHT).expect("small"))
        .expect("all the slots");
    let resp = router(core.clone())
        .oneshot(signed("pull_request", "d-1", &pr_opened("acme/widgets")))
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(pending(core), Vec::new(), "nothing was recorded");
    // One slot free again: served.
    drop(busy);
    let (status, body) = call(
        core,
        signed("pull_request", "d-1", &pr_opened("acme/widgets")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(pending(core).len(), 1);
    assert_eq!(
        core.forge().webhook_slots.available_permits(),
        IN_FLIGHT,
        "the slot was given back"
    );
}

#[tokio::test]
async fn a_streamed_body_past_the_cap_is_413() {
    let (t, _dir) = forge_core(4096);
    let core = &t.core;
    // A body of 5 KiB in 1 KiB chunks, with no Content-Length: the cap holds as it is read.
    let body = serde_json::to_vec(&pr_opened("acme/widgets")).expect("json");
    let sig = sign(SECRET.as_bytes(), &body);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![b' '; 1024])).collect();
    let mut b = Request::builder()
        .method("POST")
        .uri("/_hyperhive/forge/forgejo");
    for (k, v) in forgejo_headers("pull_request", "d-1", Some(&sig)) {
        b = b.header(k.as_str(), v.as_str());
    }
    let req = b
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .expect("a request");
    assert!(req.headers().get("content-length").is_none());
    let (status, answer) = call(core, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(
        answer,
        json!({ "error": "the body is larger than forge.max_webhook_bytes (4096 bytes)" })
    );
    assert_eq!(pending(core), Vec::new(), "nothing was recorded");
}

#[tokio::test]
async fn the_secret_file_is_read_bounded_and_trimmed_and_not_empty() {
    struct Case {
        name: &'static str,
        contents: Vec<u8>,
        want: StatusCode,
    }
    let cases = [
        Case {
            name: "a trailing newline",
            contents: format!("{SECRET}\n").into_bytes(),
            want: StatusCode::OK,
        },
        Case {
            name: "whitespace at the end, CRLF",
            contents: format!("{SECRET} \t\r\n\n").into_bytes(),
            want: StatusCode::OK,
        },
        Case {
            name: "empty",
            contents: Vec::new(),
            want: StatusCode::INTERNAL_SERVER_ERROR,
        },
        Case {
            name: "only whitespace",
            contents: b" \n\t\n".to_vec(),
            want: StatusCode::INTERNAL_SERVER_ERROR,
        },
        Case {
            name: "larger than a key file may be",
            contents: vec![b'k'; usize::try_from(crate::config::MAX_KEY_FILE).expect("small") + 1],
            want: StatusCode::INTERNAL_SERVER_ERROR,
        },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let (t, dir) = forge_core(1 << 20);
        std::fs::write(dir.path().join("secret"), &c.contents).expect("written");
        let id = format!("d-{i}");
        let (status, body) = call(
            &t.core,
            signed("pull_request", &id, &pr_opened("acme/widgets")),
        )
        .await;
        assert_eq!(status, c.want, "{}: {body}", c.name);
        let want_rows = usize::from(c.want == StatusCode::OK);
        assert_eq!(pending(&t.core).len(), want_rows, "{}", c.name);
        if c.want == StatusCode::INTERNAL_SERVER_ERROR {
            assert!(
                body["error"].as_str().is_some_and(|e| e.contains("secret")),
                "{}: {body}",
                c.name
            );
        }
    }
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
