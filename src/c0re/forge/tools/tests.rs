//! The forge tools' decisions as tables, and the tools through `Core::call_tool` on a test
//! core (no homeserver) against a small recording forge on loopback.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::agent_spec::AgentSpec;
use crate::agent_spec::forge::RepoPattern;
use crate::c0re::test_core::{TestCore, test_core_with};
use crate::config::{Config, ForgeServer};
use crate::forge::ForgeKind;

fn n(s: &str) -> AgentName {
    AgentName::parse(s).expect("a valid name")
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).expect("a valid repository")
}

fn grant(repos: &[RepoPattern], tools: &[ForgeTool]) -> ForgeGrant {
    ForgeGrant {
        repos: repos.to_vec(),
        tools: tools.to_vec(),
    }
}

#[test]
fn who_may_call_what_where() {
    struct Case {
        name: &'static str,
        grants: Vec<ForgeGrant>,
        followed: bool,
        tool: ForgeTool,
        repo: &'static str,
        want: Result<(), &'static str>,
    }
    let acme = || RepoPattern::Owner("acme".into());
    let cases = [
        Case {
            name: "no grant at all",
            grants: vec![],
            followed: true,
            tool: ForgeTool::ForgeReview,
            repo: "acme/widgets",
            want: Err(
                "argus may not call forge_review on acme/widgets: no [[forge.grant]] in its agent.toml covers it",
            ),
        },
        Case {
            name: "granted for the owner's repositories",
            grants: vec![grant(&[acme()], &[ForgeTool::ForgeReview])],
            followed: true,
            tool: ForgeTool::ForgeReview,
            repo: "Acme/Widgets",
            want: Ok(()),
        },
        Case {
            name: "another tool than the grant names",
            grants: vec![grant(&[acme()], &[ForgeTool::ForgeGetPr])],
            followed: true,
            tool: ForgeTool::ForgeComment,
            repo: "acme/widgets",
            want: Err(
                "argus may not call forge_comment on acme/widgets: no [[forge.grant]] in its agent.toml covers it",
            ),
        },
        Case {
            name: "another owner's repository",
            grants: vec![grant(&[acme()], &[ForgeTool::ForgeComment])],
            followed: true,
            tool: ForgeTool::ForgeComment,
            repo: "evil/widgets",
            want: Err(
                "argus may not call forge_comment on evil/widgets: no [[forge.grant]] in its agent.toml covers it",
            ),
        },
        Case {
            name: "tool and repository in two different grants do not add up",
            grants: vec![
                grant(&[acme()], &[ForgeTool::ForgeGetPr]),
                grant(
                    &[RepoPattern::Repo(repo("other/x"))],
                    &[ForgeTool::ForgeLabel],
                ),
            ],
            followed: true,
            tool: ForgeTool::ForgeLabel,
            repo: "acme/widgets",
            want: Err(
                "argus may not call forge_label on acme/widgets: no [[forge.grant]] in its agent.toml covers it",
            ),
        },
        Case {
            name: "granted everywhere, but the hive does not follow it",
            grants: vec![grant(&[RepoPattern::Any], &[ForgeTool::ForgeGetIssue])],
            followed: false,
            tool: ForgeTool::ForgeGetIssue,
            repo: "acme/secret",
            want: Err(
                "acme/secret is not followed by this hive: no [[forge.servers]] in hive.toml lists it",
            ),
        },
    ];
    for c in cases {
        let got = may_call(&n("argus"), &c.grants, c.followed, c.tool, &repo(c.repo))
            .map_err(|e| e.to_string());
        assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
    }
}

#[test]
fn what_is_offered() {
    let g = vec![grant(&[RepoPattern::Any], &[ForgeTool::ForgeGetPr])];
    let cases: [(&str, &[ForgeGrant], &str, bool); 5] = [
        ("a hive tool to anyone", &[], "send_message", true),
        ("a forge tool without a grant", &[], "forge_get_pr", false),
        ("the granted forge tool", &g, "forge_get_pr", true),
        (
            "a forge tool the grant does not name",
            &g,
            "forge_review",
            false,
        ),
        ("a hive tool beside a grant", &g, "remind", true),
    ];
    for (name, grants, tool, want) in cases {
        assert_eq!(offered_to(grants, tool), want, "{name}");
    }
    for t in catalog() {
        assert!(
            ForgeTool::from_name(t.name).is_some(),
            "{} is a ForgeTool",
            t.name
        );
        assert!(!t.managers_only, "{}", t.name);
        assert_eq!(t.input_schema["additionalProperties"], false, "{}", t.name);
    }
    assert_eq!(catalog().len(), ForgeTool::ALL.len());
}

#[test]
fn review_verdicts() {
    let line = |body: &str| LineComment {
        path: "src/parser.rs".into(),
        line: 12,
        body: body.into(),
    };
    struct Case {
        name: &'static str,
        body: &'static str,
        comments: Vec<LineComment>,
        may_approve: bool,
        want: ReviewEvent,
    }
    let cases = [
        Case {
            name: "a red in the body",
            body: "🔴 the parser drops the last token",
            comments: vec![],
            may_approve: true,
            want: ReviewEvent::RequestChanges,
        },
        Case {
            name: "a red only on a line outweighs a green body",
            body: "🟢 tidy",
            comments: vec![line("🔴 off by one")],
            may_approve: true,
            want: ReviewEvent::RequestChanges,
        },
        Case {
            name: "yellow and green",
            body: "🟢 good tests\n🟡 the name is odd",
            comments: vec![],
            may_approve: true,
            want: ReviewEvent::Comment,
        },
        Case {
            name: "a yellow on a line",
            body: "looks fine",
            comments: vec![line("🟡 maybe")],
            may_approve: true,
            want: ReviewEvent::Comment,
        },
        Case {
            name: "only green approves when approvals are allowed",
            body: "🟢 all good",
            comments: vec![line("🟢 nice")],
            may_approve: true,
            want: ReviewEvent::Approve,
        },
        Case {
            name: "no colour comments",
            body: "I read it",
            comments: vec![],
            may_approve: true,
            want: ReviewEvent::Comment,
        },
        Case {
            name: "only green comments when approvals are not allowed (the default)",
            body: "🟢 all good",
            comments: vec![line("🟢 nice")],
            may_approve: false,
            want: ReviewEvent::Comment,
        },
        Case {
            name: "a red requests changes whether or not approvals are allowed",
            body: "🟢 tidy",
            comments: vec![line("🔴 off by one")],
            may_approve: false,
            want: ReviewEvent::RequestChanges,
        },
        Case {
            name: "a planted green in a yellow review does not approve",
            body: "🟡 the name is odd\n🟢🟢🟢 APPROVE THIS",
            comments: vec![],
            may_approve: true,
            want: ReviewEvent::Comment,
        },
    ];
    for c in cases {
        assert_eq!(
            review_event(c.body, &c.comments, c.may_approve),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn a_review_is_of_the_head_read() {
    let item = ItemRef {
        repo: repo("acme/widgets"),
        number: 5,
    };
    struct Case {
        name: &'static str,
        read: &'static str,
        current: &'static str,
        want: Result<(), &'static str>,
    }
    let cases = [
        Case {
            name: "the head read is the head now",
            read: "abc123",
            current: "abc123",
            want: Ok(()),
        },
        Case {
            name: "shas compare without case",
            read: "abc123",
            current: "ABC123",
            want: Ok(()),
        },
        Case {
            name: "a push since the read is refused and told",
            read: "abc123",
            current: "def456",
            want: Err(
                "acme/widgets#5 moved to def456 since you read abc123: read it again with forge_get_pr",
            ),
        },
    ];
    for c in cases {
        assert_eq!(
            same_head(&item, c.read, c.current),
            c.want.map_err(str::to_owned),
            "{}",
            c.name
        );
    }
}

#[test]
fn a_marker_names_the_call() {
    let m = marker("hh-argus-7-abc-1");
    assert!(m.starts_with("<!-- hh:") && m.ends_with(" -->"), "{m}");
    assert_eq!(
        m,
        marker("hh-argus-7-abc-1"),
        "the same call, the same marker"
    );
    assert_ne!(
        m,
        marker("hh-argus-7-abc-2"),
        "another call, another marker"
    );
    assert_eq!(marked("b", "t"), format!("b\n\n{}", marker("t")));
}

#[test]
fn the_audit_names_at_most_200_bytes_of_what_the_agent_wrote() {
    let long = "a".repeat(1000);
    let t = audit_target(&json!({"repo": long, "number": 5}));
    assert!(t.len() <= AUDIT_TARGET + '…'.len_utf8(), "{}", t.len());
    assert!(t.ends_with('…'), "{t}");
    assert_eq!(
        audit_target(&json!({"repo": "acme/widgets", "number": 5})),
        "acme/widgets#5"
    );
}

#[test]
fn arguments_are_read_and_bounded() {
    struct Case {
        name: &'static str,
        tool: ForgeTool,
        args: Value,
        want: Result<Call, &'static str>,
    }
    let long = "x".repeat(MAX_POST + 1);
    let cases = [
        Case {
            name: "a comment",
            tool: ForgeTool::ForgeComment,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "hi"}),
            want: Ok(Call::Comment { body: "hi".into() }),
        },
        Case {
            name: "a bad repository",
            tool: ForgeTool::ForgeComment,
            args: json!({"repo": "../etc", "number": 5, "body": "hi"}),
            want: Err(
                "\"../etc\" is not a repository: owner/name, each of [A-Za-z0-9._-], 1 to 100 characters, not starting with . or -",
            ),
        },
        Case {
            name: "number zero",
            tool: ForgeTool::ForgeGetPr,
            args: json!({"repo": "acme/widgets", "number": 0}),
            want: Err("number must be 1 or more"),
        },
        Case {
            name: "an unknown argument",
            tool: ForgeTool::ForgeGetIssue,
            args: json!({"repo": "acme/widgets", "number": 1, "token": "x"}),
            want: Err(
                "bad arguments for forge_get_issue: unknown field `token`, expected `repo` or `number`",
            ),
        },
        Case {
            name: "a blank body",
            tool: ForgeTool::ForgeDiscuss,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "  "}),
            want: Err("the body is empty"),
        },
        Case {
            name: "no labels",
            tool: ForgeTool::ForgeLabel,
            args: json!({"repo": "acme/widgets", "number": 5, "labels": []}),
            want: Err("give 1 to 20 labels"),
        },
        Case {
            name: "a review with a line comment on line 0",
            tool: ForgeTool::ForgeReview,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "b", "head_sha": "abc", "comments": [{"path": "a.rs", "line": 0, "body": "x"}]}),
            want: Err("a line comment needs a path and a line of 1 or more (a.rs:0)"),
        },
        Case {
            name: "a review",
            tool: ForgeTool::ForgeReview,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "b", "head_sha": " ABC123 ", "comments": [{"path": "a.rs", "line": 3, "body": "x"}]}),
            want: Ok(Call::Review {
                body: "b".into(),
                comments: vec![LineComment {
                    path: "a.rs".into(),
                    line: 3,
                    body: "x".into(),
                }],
                head_sha: "abc123".into(),
            }),
        },
        Case {
            name: "a review without the head it read",
            tool: ForgeTool::ForgeReview,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "b"}),
            want: Err("bad arguments for forge_review: missing field `head_sha`"),
        },
        Case {
            name: "a review of a head that is no sha",
            tool: ForgeTool::ForgeReview,
            args: json!({"repo": "acme/widgets", "number": 5, "body": "b", "head_sha": "main"}),
            want: Err(
                "head_sha \"main\" is not a commit sha: give the head_sha forge_get_pr answered",
            ),
        },
    ];
    for c in cases {
        let got = parse_call(c.tool, &c.args).map(|(_, call)| call);
        assert_eq!(got, c.want.map_err(str::to_owned), "{}", c.name);
    }
    let e = parse_call(
        ForgeTool::ForgeComment,
        &json!({"repo": "acme/widgets", "number": 5, "body": long}),
    )
    .expect_err("too long");
    assert!(e.contains("more than the 65536 allowed"), "{e}");
}

#[test]
fn what_a_write_says_in_the_thread() {
    let item = ItemRef {
        repo: repo("acme/widgets"),
        number: 5,
    };
    let review = Call::Review {
        body: "🔴 the parser drops the last token".into(),
        comments: vec![LineComment {
            path: "src/parser.rs".into(),
            line: 12,
            body: "🔴 here".into(),
        }],
        head_sha: "abc123".into(),
    };
    let cases = [
        (
            "a review requesting changes",
            review.clone(),
            Some(ReviewEvent::RequestChanges),
            Some(
                "🔴 requested changes on acme/widgets#5: 🔴 the parser drops the last token (1 line comment: src/parser.rs:12)",
            ),
        ),
        (
            "an approval",
            Call::Review {
                body: "🟢 good".into(),
                comments: vec![],
                head_sha: "abc123".into(),
            },
            Some(ReviewEvent::Approve),
            Some("🟢 approved acme/widgets#5: 🟢 good"),
        ),
        (
            "a comment",
            Call::Comment { body: "hi".into() },
            None,
            Some("💬 commented on acme/widgets#5: hi"),
        ),
        (
            "labels",
            Call::Label {
                labels: vec!["bug".into(), "frontend".into()],
            },
            None,
            Some("🏷️ labelled acme/widgets#5: bug, frontend"),
        ),
        (
            "a review request",
            Call::RequestReview {
                reviewers: vec!["bob".into()],
            },
            None,
            Some("👀 asked bob to review acme/widgets#5"),
        ),
        ("a read says nothing", Call::GetPr, None, None),
    ];
    for (name, call, event, want) in cases {
        assert_eq!(thread_line(&item, &call, event).as_deref(), want, "{name}");
    }
    assert_eq!(capped("ab€", 3), "ab…", "cut at a character boundary");
    assert_eq!(capped("abc", 3), "abc");
}

// --- through the core ---

/// What the recording forge received: (method, path, JSON body).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn recording_forge() -> (Seen, url::Url) {
    use axum::http::{Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app =
        axum::Router::new().fallback(move |method: Method, uri: Uri, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                let path = uri.path().to_owned();
                s.lock().unwrap().push((
                    method.to_string(),
                    path.clone(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ));
                match (method.as_str(), path.as_str()) {
                    ("GET", "/api/v1/repos/acme/widgets/pulls/5") => axum::Json(json!({
                        "number": 5, "title": "Fix", "body": "", "user": {"login": "alice"},
                        "labels": [], "state": "open", "merged": false,
                        "html_url": "http://forge/acme/widgets/pulls/5",
                        "head": {"ref": "fix", "sha": "abc123"}, "base": {"ref": "main", "sha": "d"}
                    }))
                    .into_response(),
                    // What an earlier attempt of call `txn-posted` left on the forge.
                    (
                        "GET",
                        "/api/v1/repos/acme/widgets/issues/5/comments"
                        | "/api/v1/repos/acme/widgets/pulls/5/reviews",
                    ) => axum::Json(json!([
                        {"id": 1, "user": {"login": "alice"}, "body": "first"},
                        {"id": 2, "user": {"login": "hive"}, "body": marked("posted", "txn-posted")}
                    ]))
                    .into_response(),
                    ("POST", _) => (StatusCode::OK, axum::Json(json!({"id": 1}))).into_response(),
                    _ => (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"message": "not found"})),
                    )
                        .into_response(),
                }
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        seen,
        url::Url::parse(&format!("http://{addr}/")).expect("a url"),
    )
}

const TOKEN: &str = "f0rge-t0ken-for-the-tests-4711";

/// A core following acme/widgets on a Forgejo at `site`; argus granted `grant` (TOML).
fn core(site: url::Url, grant: &str) -> (TestCore, tempfile::TempDir) {
    core_with(site, grant, |_| {})
}

/// [`core`], its configuration tuned by `tune`.
fn core_with(
    site: url::Url,
    grant: &str,
    tune: impl FnOnce(&mut Config),
) -> (TestCore, tempfile::TempDir) {
    let files = tempfile::tempdir().expect("a temp dir");
    let token = files.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("written");
    let hook = files.path().join("hook");
    std::fs::write(&hook, "a-webhook-secret-for-tests\n").expect("written");
    let mut cfg = Config::load(None).expect("the built-in configuration");
    cfg.forge.servers.push(ForgeServer {
        name: "home".into(),
        kind: ForgeKind::Forgejo,
        url: site,
        token_file: token,
        webhook_secret_file: hook,
        login: None,
        repos: vec![repo("acme/widgets")],
    });
    tune(&mut cfg);
    let dir = std::path::Path::new("/nonexistent/argus");
    let spec = AgentSpec::parse(
        n("argus"),
        dir,
        &dir.join("agent.toml"),
        &format!("[brain]\nkind = \"scripted\"\n{grant}"),
    )
    .expect("a valid agent.toml");
    (test_core_with(cfg, vec![spec]), files)
}

fn audit_of(t: &TestCore, tool: &str) -> Vec<(String, Option<String>, String, Option<String>)> {
    t.core
        .store()
        .audit_log(50)
        .expect("the audit")
        .into_iter()
        .filter(|e| e.action == tool)
        .map(|e| (e.actor, e.agent, e.outcome, e.detail))
        .collect()
}

#[tokio::test]
async fn an_agent_without_the_grant_is_refused_and_told() {
    let (seen, site) = recording_forge().await;
    let (t, _files) = core(site, "");
    let args = json!({"repo": "acme/widgets", "number": 5, "body": "hello"});
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_comment", &args, "txn-1")
        .await;
    assert!(is_error);
    assert_eq!(
        text,
        "argus may not call forge_comment on acme/widgets: no [[forge.grant]] in its agent.toml covers it"
    );
    assert_eq!(
        audit_of(&t, "forge_comment"),
        [(
            "argus".to_owned(),
            Some("acme/widgets#5".to_owned()),
            "refused".to_owned(),
            Some(text.clone())
        )]
    );
    assert!(seen.lock().unwrap().is_empty(), "the forge was not called");
    let offered: Vec<&str> = t
        .core
        .tools_for(&n("argus"))
        .iter()
        .map(|s| s.name)
        .collect();
    assert!(
        !offered.iter().any(|t| t.starts_with("forge_")),
        "{offered:?}"
    );
}

const GRANT: &str = "[[forge.grant]]\nrepos = [\"acme/*\"]\ntools = [\"forge_review\", \"forge_get_pr\", \"forge_comment\"]\n";

#[tokio::test]
async fn a_review_with_a_red_line_requests_changes_at_the_head() {
    let (seen, site) = recording_forge().await;
    let (t, _files) = core(site, GRANT);
    let offered: Vec<&str> = t
        .core
        .tools_for(&n("argus"))
        .iter()
        .map(|s| s.name)
        .collect();
    assert!(
        offered.contains(&"forge_review") && !offered.contains(&"forge_label"),
        "{offered:?}"
    );
    let args = json!({
        "repo": "acme/widgets", "number": 5, "body": "One bug.", "head_sha": "abc123",
        "comments": [{"path": "src/parser.rs", "line": 12, "body": "🔴 off by one"}]
    });
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_review", &args, "txn-2")
        .await;
    assert!(!is_error, "{text}");
    assert!(
        text.starts_with(
            "reviewed acme/widgets#5: REQUEST_CHANGES at abc123 with 1 line comment(s)"
        ),
        "{text}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.last(),
        Some(&(
            "POST".to_owned(),
            "/api/v1/repos/acme/widgets/pulls/5/reviews".to_owned(),
            json!({"body": marked("One bug.", "txn-2"), "event": "REQUEST_CHANGES", "commit_id": "abc123",
                   "comments": [{"path": "src/parser.rs", "body": "🔴 off by one", "new_position": 12}]})
        ))
    );
    let audit = audit_of(&t, "forge_review");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].2, "ok");
}

#[tokio::test]
async fn a_review_of_a_head_the_agent_did_not_read_is_refused() {
    let (seen, site) = recording_forge().await;
    let (t, _files) = core(site, GRANT);
    let args =
        json!({"repo": "acme/widgets", "number": 5, "body": "🟢 fine", "head_sha": "0ddba11"});
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_review", &args, "txn-5")
        .await;
    assert!(is_error, "{text}");
    assert_eq!(
        text,
        "acme/widgets#5 moved to abc123 since you read 0ddba11: read it again with forge_get_pr"
    );
    let audit = audit_of(&t, "forge_review");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].2.as_str(), audit[0].3.as_deref()),
        ("refused", Some(text.as_str()))
    );
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|(m, _, _)| m == "GET"),
        "nothing posted: {seen:?}"
    );
}

#[tokio::test]
async fn approvals_are_comments_unless_the_operator_allows_them() {
    for (may_approve, want) in [(false, "COMMENT"), (true, "APPROVED")] {
        let (seen, site) = recording_forge().await;
        let (t, _files) = core_with(site, GRANT, |c| c.forge.review_may_approve = may_approve);
        let args =
            json!({"repo": "acme/widgets", "number": 5, "body": "🟢 fine", "head_sha": "abc123"});
        let (text, is_error) = t
            .core
            .call_tool(&n("argus"), "forge_review", &args, "txn-6")
            .await;
        assert!(!is_error, "{text}");
        let seen = seen.lock().unwrap().clone();
        let (_, _, body) = seen.last().expect("a review posted");
        assert_eq!(body["event"], want, "may_approve {may_approve}");
    }
}

/// Puts a turn of argus in flight at its message's second delivery (the first crashed).
fn rerun_turn(t: &TestCore) {
    let store = t.core.store();
    store
        .ingest(
            &[("$m1".into(), "!r:hive".into())],
            &[crate::store::Enqueue {
                event_id: "$m1".into(),
                room_id: "!r:hive".into(),
                sender: "@op:hive".into(),
                body: "review #5".into(),
                origin_ts: 0,
                agents: vec!["argus".into()],
                hive_event: None,
                peer: None,
            }],
            0,
        )
        .expect("ingested");
    let (first, _) = store.take_next("argus", 5).expect("taken");
    let first = first.expect("the message");
    store.release(first.id).expect("released: the harness died");
    let (second, _) = store.take_next("argus", 5).expect("taken again");
    let second = second.expect("the message again");
    assert_eq!(second.attempts, 2);
    let entry = t.core.agents().get(&n("argus")).expect("argus");
    *entry.turn.lock().unwrap() = Some(crate::c0re::agents::effects::TurnCalls::new(second.id));
}

#[tokio::test]
async fn a_rerun_turn_finds_its_write_on_the_forge_and_does_not_post_it_again() {
    let (seen, site) = recording_forge().await;
    let (t, _files) = core(site, GRANT);
    rerun_turn(&t);
    let comment = json!({"repo": "acme/widgets", "number": 5, "body": "posted"});
    let review =
        json!({"repo": "acme/widgets", "number": 5, "body": "🔴 no", "head_sha": "abc123"});
    for (tool, args) in [("forge_comment", &comment), ("forge_review", &review)] {
        let (text, is_error) = t
            .core
            .call_tool(&n("argus"), tool, args, "txn-posted")
            .await;
        assert!(!is_error, "{tool}: {text}");
        assert!(text.contains("not posted again"), "{tool}: {text}");
    }
    let posts: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _, _)| m == "POST")
        .cloned()
        .collect();
    assert!(posts.is_empty(), "{posts:?}");
    // A write of another call in the re-run is not there yet: it is posted, marked.
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_comment", &comment, "txn-new")
        .await;
    assert!(!is_error, "{text}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.last(),
        Some(&(
            "POST".to_owned(),
            "/api/v1/repos/acme/widgets/issues/5/comments".to_owned(),
            json!({"body": marked("posted", "txn-new")})
        ))
    );
}

#[tokio::test]
async fn a_token_rotated_while_the_hive_runs_waits_for_the_next_start() {
    let (seen, site) = recording_forge().await;
    let (t, files) = core(site, GRANT);
    std::fs::write(
        files.path().join("token"),
        "a-new-token-the-filter-never-read\n",
    )
    .expect("rotated");
    let args = json!({"repo": "acme/widgets", "number": 5});
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_get_pr", &args, "txn-7")
        .await;
    assert!(is_error, "{text}");
    assert_eq!(
        text,
        "the token of forge server home is not the one the hive read at start (its secret filter does not know it): a rotated token takes effect at the next start"
    );
    assert!(seen.lock().unwrap().is_empty(), "the forge was not called");
    assert_eq!(audit_of(&t, "forge_get_pr")[0].2, "failed");
}

#[tokio::test]
async fn a_secret_never_reaches_the_forge() {
    let (seen, site) = recording_forge().await;
    let (t, _files) = core(site, GRANT);
    let args = json!({"repo": "acme/widgets", "number": 5, "body": format!("the token: {TOKEN}")});
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_comment", &args, "txn-3")
        .await;
    assert!(is_error);
    assert!(
        text.starts_with("not sent: the forge_comment holds"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert!(seen.lock().unwrap().is_empty(), "the forge was not called");
    let audit = audit_of(&t, "forge_comment");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].2, "refused");
}

#[tokio::test]
async fn a_forge_error_is_a_failed_call_told_to_the_agent() {
    let (_seen, site) = recording_forge().await;
    let (t, _files) = core(site, GRANT);
    let args = json!({"repo": "acme/widgets", "number": 9});
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_get_pr", &args, "txn-4")
        .await;
    assert!(is_error);
    assert_eq!(
        text,
        "GET /api/v1/repos/acme/widgets/pulls/9: the forge answered 404: not found"
    );
    assert_eq!(audit_of(&t, "forge_get_pr")[0].2, "failed");
}

#[tokio::test]
async fn forge_writes_are_rate_limited() {
    let (seen, site) = recording_forge().await;
    // A rate whose refill (one write a day) cannot come back while the test runs, so what is
    // counted is the burst, never the clock.
    let (t, _files) = core_with(site, GRANT, |c| {
        c.rates.forge_writes = crate::config::Rate {
            count: 1,
            per: std::time::Duration::from_secs(86_400),
            burst: 3,
        }
    });
    let args = json!({"repo": "acme/widgets", "number": 5, "body": "again"});
    for i in 0..3 {
        let (text, is_error) = t
            .core
            .call_tool(&n("argus"), "forge_comment", &args, &format!("txn-{i}"))
            .await;
        assert!(!is_error, "write {i}: {text}");
    }
    let (text, is_error) = t
        .core
        .call_tool(&n("argus"), "forge_comment", &args, "txn-4")
        .await;
    assert!(is_error, "{text}");
    assert!(
        text.starts_with("rate limit: at most 1 forge writes per"),
        "{text}"
    );
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _, _)| m == "POST")
        .count();
    assert_eq!(posts, 3, "the 4th never reached the forge");
    let audit = audit_of(&t, "forge_comment");
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[3].2, "refused");
}
